"""A small chatbot trained in a second or two, shared by the chat tests."""

import functools

import knetpy as kp
from knetpy.chat import ChatBot


@functools.lru_cache(maxsize=1)
def tiny_bot():
    """A bot trained briefly on a slice of the shipped pairs: enough to answer, not to answer well."""
    pairs = kp.datasets.dialogue()[:400]
    return ChatBot.train(pairs, epochs=2, embed=8, hidden=16, seed=0)
