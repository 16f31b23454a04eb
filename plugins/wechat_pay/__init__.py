"""Built-in plugin wechat_pay (filled in by the money issue)."""
