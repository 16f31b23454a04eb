"""The operators' console: finding users, a user's whole picture, and their personal
data (export and anonymisation, docs/operations.md "Personal data"); docs/api.md
"Operators". Routes in :mod:`kpay.core.admin.routes`."""
