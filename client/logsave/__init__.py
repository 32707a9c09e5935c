"""logsave: send logs to log-save-server from Python, without ever blocking the application.

client = logsave.LogClient("http://logs.internal:8000", service="checkout")
client.log("INFO", "order placed", user_id="u-1", order_id=1042)

logging.getLogger().addHandler(logsave.LogSaveHandler(service="checkout"))
"""

from logsave.client import LogClient
from logsave.handler import LogSaveHandler

__all__ = ["LogClient", "LogSaveHandler"]
