"""Identity: accounts, their API keys, and SSH key pairs.

May use: network (a new account gets its `default` security group), the shared services.
"""
