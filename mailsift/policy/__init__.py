"""The greylisting Postfix SMTP access policy service."""
