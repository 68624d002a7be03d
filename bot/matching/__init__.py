"""Matching questions to topics: text normalisation, pinyin and speller, matcher, evaluation.

Nothing here imports Flask or wechatpy; the knowledge base comes from bot.knowledge.
"""
