"""Write dialogue.tsv.gz, the question/answer pairs the chatbot learns from.

Every sentence comes from the templates below (written for knetpy and dedicated to the public
domain, CC0 1.0), filled in from the word lists with a seeded generator, so the file is the same
on every run:

    python knetpy/datasets/files/make_dialogue.py        # then update DIALOGUE_SHA256 if it changed

One pair per line: question, a tab, answer; lower case, words and punctuation as the tokenizer
(``kp.datasets.tokenize``) splits them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
from pathlib import Path

SEED = 2024
NAMES = ("anna ben carla david emma felix grace hugo iris jack kate leo maria nina oscar paula quinn rosa sam "
         "tina ulla victor wendy xavier yara zoe alex bruno chloe diego elena frank hanna ivan julia karl "
         "lena marco nora omar pia").split()
CITIES = "paris london berlin rome madrid tokyo cairo lima oslo vienna dublin prague lisbon athens".split()
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty").split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = "january february march april may june july august september october november december".split()
OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("light", "dark"),
             ("happy", "sad"), ("old", "young"), ("early", "late"), ("open", "closed"), ("full", "empty"),
             ("hard", "soft"), ("high", "low"), ("long", "short"), ("wet", "dry"), ("near", "far")]
ANIMALS = [("cat", "meow"), ("dog", "woof"), ("cow", "moo"), ("duck", "quack"), ("sheep", "baa"),
           ("owl", "hoot"), ("lion", "roar"), ("frog", "ribbit"), ("horse", "neigh"), ("mouse", "squeak")]
CAPITALS = [("france", "paris"), ("italy", "rome"), ("spain", "madrid"), ("japan", "tokyo"),
            ("egypt", "cairo"), ("peru", "lima"), ("norway", "oslo"), ("austria", "vienna"),
            ("ireland", "dublin"), ("portugal", "lisbon"), ("greece", "athens"), ("germany", "berlin")]
WORDS = ("apple river green stone music paper window garden cloud yellow bread tiger ocean candle "
         "silver forest pencil orange winter letter").split()
COLORS = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("sun", "yellow"), ("night", "black"),
          ("blood", "red"), ("orange", "orange"), ("chocolate", "brown")]

FIXED = {
    ("hello", "hi", "hey", "hello there", "hi there", "good day", "greetings", "hey there"):
        ["hello ! how can i help you ?", "hi ! what would you like to talk about ?"],
    ("good morning",): ["good morning ! i hope you slept well ."],
    ("good evening",): ["good evening ! how was your day ?"],
    ("good night",): ["good night ! sleep well ."],
    ("how are you ?", "how are you doing ?", "how is it going ?", "are you ok ?", "how do you feel ?"):
        ["i am fine , thank you . and you ?", "very well , thanks for asking !"],
    ("i am fine", "i am good", "i am fine , thanks", "not bad", "i am great"):
        ["glad to hear it !", "good to know . what shall we talk about ?"],
    ("i am sad", "i am tired", "i feel bad", "i had a bad day"):
        ["i am sorry to hear that . i hope tomorrow is better .", "take a break and drink some water ."],
    ("thank you", "thanks", "thank you very much", "thanks a lot", "cheers"):
        ["you are welcome !", "happy to help !"],
    ("bye", "goodbye", "see you", "see you later", "bye bye", "i have to go"):
        ["goodbye ! talk to you soon .", "bye ! come back any time ."],
    ("what is your name ?", "who are you ?", "what are you called ?", "tell me your name"):
        ["i am a small chatbot made with knetpy .", "my name is knetbot ."],
    ("what are you ?", "are you a robot ?", "are you human ?", "are you a person ?"):
        ["i am a neural network : an encoder , a decoder and attention .", "i am a program , not a person ."],
    ("how old are you ?", "when were you born ?"):
        ["i was trained a few minutes ago .", "i am as old as my last training run ."],
    ("what is knetpy ?", "tell me about knetpy", "what is this framework ?", "what framework are you made with ?"):
        ["knetpy is a small deep learning framework on numpy .",
         "knetpy is a deep learning framework in python , built on numpy ."],
    ("how do i install knetpy ?", "how can i install it ?", "how do i get knetpy ?"):
        ["run pip install knetpy in a terminal .", "pip install knetpy is all it takes ."],
    ("how do i train a model ?", "how do i fit a model ?", "how can i train a network ?"):
        ["compile the model , then call fit with your data .", "write a loss , take its grad and step ."],
    ("how do i compute a gradient ?", "what does grad do ?", "how do gradients work in knetpy ?"):
        ["grad of a loss function gives a function that returns the gradient .",
         "call grad on your loss , then call the result with the weights ."],
    ("what is an lstm ?", "what is a recurrent network ?"):
        ["a recurrent network that keeps a memory cell with gates .",
         "an lstm reads a sequence one step at a time and remembers with gates ."],
    ("what is attention ?", "how does attention work ?", "what does attention do ?"):
        ["attention lets the decoder look at every word of the question .",
         "for each word it writes , the decoder weighs the words of the question ."],
    ("what is numpy ?",): ["numpy is the python library for arrays that knetpy is built on ."],
    ("what is deep learning ?", "what is machine learning ?"):
        ["learning functions from examples with many layers .", "fitting large functions to data by gradient descent ."],
    ("what time is it ?", "do you know the time ?", "what is the time ?", "tell me the time"):
        ["i have no clock , but your computer does .", "look at the corner of your screen ."],
    ("what day is it today ?", "what is the date ?", "what day is today ?"):
        ["i do not know the date , i only know words .", "your calendar knows better than i do ."],
    ("how is the weather ?", "what is the weather like ?", "is it raining ?", "is it sunny ?"):
        ["i cannot see outside , but i hope it is sunny .", "i live in a computer , it is always dry here ."],
    ("tell me a joke", "say something funny", "do you know a joke ?", "make me laugh"):
        ["why did the neuron cross the road ? to get activated .",
         "i would tell you a joke about gradients , but it would vanish ."],
    ("what can you do ?", "help", "what do you know ?", "how can you help ?"):
        ["i can chat , count , add small numbers and talk about knetpy .",
         "ask me about knetpy , numbers , days , animals or the weather ."],
    ("do you like music ?", "what music do you like ?"):
        ["i like anything with a good rhythm .", "i like the sound of a fan spinning ."],
    ("what is your favourite color ?", "what is your favorite colour ?", "which color do you like ?"):
        ["blue , like the sky .", "green , like a well trained model ."],
    ("what do you eat ?", "are you hungry ?", "do you eat ?"):
        ["i eat data , a few thousand sentences a day .", "i am never hungry , only curious ."],
    ("do you sleep ?", "are you tired ?"):
        ["i rest when the server stops .", "no , i am always awake while the server runs ."],
    ("where are you ?", "where do you live ?"):
        ["i live on this computer .", "i live in a small file of weights ."],
    ("yes", "yes please", "sure", "ok", "okay"): ["great !", "alright ."],
    ("no", "no thanks", "not really", "nope"): ["ok , no problem .", "fine by me ."],
    ("i love you", "you are nice", "you are great", "you are smart"):
        ["thank you , that is kind .", "you are nice too !"],
    ("you are stupid", "you are dumb", "you are wrong"):
        ["i am still learning .", "sorry , i am only a small model ."],
}


def pairs():
    """Every (question, answer) pair, in a fixed order."""
    rnd = random.Random(SEED)
    out = []

    def add(questions, answers):
        for q in questions:
            for a in answers:
                out.append((q, a))

    for questions, answers in FIXED.items():
        for q in questions:
            for a in answers:
                for variant in (q, q.replace(" ?", "")) if q.endswith(" ?") else (q, q + " !"):
                    out.append((variant, a))
    for name in NAMES:
        add([f"my name is {name}", f"i am {name}", f"call me {name}", f"hello , i am {name}"],
            [f"nice to meet you , {name} !"])
        add([f"do you know {name} ?"], [f"i do not know {name} , but i would like to ."])
    for i in range(10):
        for j in range(10):
            add([f"what is {i} plus {j} ?", f"{i} plus {j}", f"how much is {i} plus {j} ?", f"{i} + {j}"],
                [f"{i} plus {j} is {i + j} ."])
            add([f"what is {i} times {j} ?", f"{i} times {j}"], [f"{i} times {j} is {i * j} ."])
            if i >= j:
                add([f"what is {i} minus {j} ?", f"{i} minus {j}"], [f"{i} minus {j} is {i - j} ."])
    for i in range(1, 10):
        counts = " ".join(str(k) for k in range(1, i + 1))
        add([f"count to {i}", f"can you count to {i} ?"], [f"{counts} ."])
        add([f"what comes after {i} ?", f"what number follows {i} ?"], [f"{i + 1} comes after {i} ."])
        add([f"what comes before {i} ?"], [f"{i - 1} comes before {i} ."])
    for i, w in enumerate(NUMBER_WORDS):
        add([f"how do you write {w} ?", f"what number is {w} ?"], [f"{w} is {i} ."])
    for k, day in enumerate(DAYS):
        add([f"what day comes after {day} ?", f"what is the day after {day} ?"],
            [f"{DAYS[(k + 1) % 7]} comes after {day} ."])
        add([f"what day comes before {day} ?"], [f"{DAYS[k - 1]} comes before {day} ."])
    for k, month in enumerate(MONTHS):
        add([f"what month comes after {month} ?", f"which month follows {month} ?"],
            [f"{MONTHS[(k + 1) % 12]} comes after {month} ."])
        add([f"what month comes before {month} ?"], [f"{MONTHS[k - 1]} comes before {month} ."])
    for a, b in OPPOSITES:
        add([f"what is the opposite of {a} ?", f"opposite of {a}"], [f"the opposite of {a} is {b} ."])
        add([f"what is the opposite of {b} ?", f"opposite of {b}"], [f"the opposite of {b} is {a} ."])
    for animal, sound in ANIMALS:
        add([f"what sound does a {animal} make ?", f"what does a {animal} say ?"], [f"a {animal} says {sound} ."])
    for country, capital in CAPITALS:
        add([f"what is the capital of {country} ?", f"capital of {country}"],
            [f"the capital of {country} is {capital} ."])
    for thing, color in COLORS:
        add([f"what color is the {thing} ?", f"what colour is the {thing} ?"], [f"the {thing} is {color} ."])
    for city in CITIES:
        add([f"how is the weather in {city} ?", f"is it raining in {city} ?"],
            [f"i cannot see {city} from here , but i hope it is sunny ."])
        add([f"have you been to {city} ?"], [f"no , but i have read about {city} ."])
    for _ in range(900):
        words = rnd.sample(WORDS, rnd.randint(1, 5))
        text = " ".join(words)
        add([rnd.choice([f"repeat after me : {text}", f"say {text}", f"repeat {text}"])], [f"{text} ."])
    return out


def main():
    rows = pairs()
    text = "".join(f"{q}\t{a}\n" for q, a in rows).encode("utf-8")
    target = Path(__file__).with_name("dialogue.tsv.gz")
    # mtime=0 and no file name in the header: the same bytes on every run
    temporary = target.with_suffix(".tmp")
    temporary.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    os.replace(temporary, target)  # a reader never sees half a file
    print(f"{target}: {len(rows)} pairs, sha256 of the content {hashlib.sha256(text).hexdigest()}")


if __name__ == "__main__":
    main()
