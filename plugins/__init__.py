"""kpay's built-in plugins. Each is loaded through the ``kpay.plugins`` entry points."""
