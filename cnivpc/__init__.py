"""cnivpc: AWS-VPC-native pod networking as CNI plugins. This module only holds the version;
it imports nothing, so every entry point can read it for free."""

__version__ = "0.1.0"
