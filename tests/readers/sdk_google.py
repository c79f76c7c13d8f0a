"""google-auth against a refreshd `gce-metadata` endpoint (GCE_METADATA_HOST, GCE_METADATA_IP).

Prints, one per line: `on_gce BOOL` (the library's own detection: it probes `/` for the
`Metadata-Flavor: Google` header), `type MODULE.CLASS` of what `google.auth.default()` found,
`project ID`, then after `refresh()`: `email`, `token` and `expiry` (ISO 8601, UTC).
"""
import sys

import google.auth
from google.auth.compute_engine import _metadata
from google.auth.transport.requests import Request


def main():
    request = Request()
    print("on_gce", _metadata.is_on_gce(request), flush=True)
    credentials, project = google.auth.default()
    kind = type(credentials)
    print("type", f"{kind.__module__}.{kind.__name__}", flush=True)
    print("project", project, flush=True)
    credentials.refresh(request)
    print("email", credentials.service_account_email, flush=True)
    print("token", credentials.token, flush=True)
    print("expiry", credentials.expiry.isoformat(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
