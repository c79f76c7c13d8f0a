"""azure-identity's ManagedIdentityCredential against a refreshd `azure-managed-identity`
endpoint (App Service: IDENTITY_ENDPOINT, IDENTITY_HEADER).

Usage: sdk_azure.py RESOURCE

Prints `token TOKEN EXPIRES_ON` for `get_token(RESOURCE + "/.default")`, or `error TYPE:
MESSAGE` when it fails. The HTTP exchange is logged to stderr by azure-core's own logging
(`Response status: …`); headers are redacted by it.
"""
import logging
import sys

from azure.identity import ManagedIdentityCredential


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    try:
        token = ManagedIdentityCredential().get_token(sys.argv[1] + "/.default")
    except Exception as e:  # the test reads what failed
        print("error", f"{type(e).__name__}: {e}", flush=True)
        return 0
    print("token", token.token, token.expires_on, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
