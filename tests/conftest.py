"""Shared test set-up: kpay's own fixtures come from the kpay.testing pytest plugin; the
wechat_pay plugin's (``fake_wechat``) from its own."""

pytest_plugins = ["plugins.wechat_pay.testing", "plugins.wechat_notify.testing"]
