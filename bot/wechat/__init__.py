"""WeChat: the message protocol (protocol.py) and the API client (client.py)."""
