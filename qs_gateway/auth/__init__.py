"""Identity: credentials, principals, scopes and access policies."""

from .authenticator import Authenticator, NotEnoughPermissions
from .credentials import Credentials, parse_credentials
from .principal import Principal

__all__ = ["Authenticator", "Credentials", "NotEnoughPermissions", "Principal", "parse_credentials"]
