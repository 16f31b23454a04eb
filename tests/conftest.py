"""Shared test set-up: kpay's own fixtures come from the kpay.testing pytest plugin."""
