"""Announcements pushed to subscribers through the WeChat API, one module per job.

- announcements: audiences, creating an announcement and its job, progress, retry,
  cancel, the bot's "最新通知", the fallback channel's daily quota
- runner: sending a job (customer-service, template or mass messages), resumably
- courier: a serving process's background threads (outbox notices, resumed jobs)
"""
