"""Schemathesis hooks for .ci/schemathesis: robot packages (application/zip) as bodies.

Schemathesis has no serializer for zip files, and no schema can say what a valid robot
package is. Each generated body becomes a real package (a robot.toml named after the
generated value), so that uploads make robots whose ids the document's links lead to.
Refused packages are the end-to-end tests' business (zip slips, bombs, links, sizes).
"""

import hashlib
import io
import zipfile

import schemathesis


@schemathesis.serializer("application/zip")
def robot_package(ctx, value):
    raw = value if isinstance(value, (bytes, bytearray)) else repr(value).encode()
    digest = hashlib.sha256(bytes(raw)).hexdigest()
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("robot.toml", f'name = "st-{digest[:12]}"\ncommand = ["true"]\n')
    return {"data": package.getvalue()}
