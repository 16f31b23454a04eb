"""Money: a double-entry ledger, wallets with holds, orders and payment providers.

All amounts are integer fen (CNY). See docs/money.md for the accounts and rules.
"""
