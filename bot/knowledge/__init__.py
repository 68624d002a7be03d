"""The policy knowledge base: load and check (load), serve with live reload (live), edit (edit).

Data lives in policies/*.toml; nothing here imports Flask or wechatpy.
"""
