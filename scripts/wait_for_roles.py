"""azd predeploy hook: wait until the role assignments of the relay's identity have had time to take
effect, so that the first deployment's package upload is not refused with 403.

Azure applies a new role assignment within seconds to minutes. `azd up` deploys right after it
provisions, and the Flex Consumption deployment writes the package to the storage container with the
relay's identity: while its Storage Blob Data Owner assignment is still propagating, the upload fails
with 403 ("InaccessibleStorageException ... BlobUploadFailedException ... 403") and azd does not
retry. This hook reads when the identity's assignments were created (`az rest`, Azure Resource
Manager) and waits until the youngest is RELAY_ROLE_SETTLE_SECONDS old (default 120). Assignments
made by an earlier provision are old enough, so later deployments do not wait. Without the Azure CLI,
or when it cannot read the assignments, the hook says what to do and lets the deployment go on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from urllib.parse import quote

DEFAULT_SETTLE_SECONDS = 120.0
IF_IT_FAILS = (
    "If `azd deploy` then fails with 403 (InaccessibleStorageException / BlobUploadFailedException), "
    "the identity's new roles are still propagating: wait a minute or two and run `azd deploy` again."
)


def say(message: str) -> None:
    """One line of the hook's output (azd shows it)."""
    print(f"wait-for-roles: {message}", flush=True)


def parse_time(text: str) -> datetime:
    """ARM's createdOn (e.g. 2026-12-01T11:00:00.1234567Z) as an aware datetime."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def assignment_times(az: str, subscription: str, group: str, principal: str) -> list[datetime]:
    """When each role assignment of `principal` in the resource group (or below it) was created."""
    where = quote(f"principalId eq '{principal}'")
    url = (
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Authorization/"
        f"roleAssignments?api-version=2022-04-01&$filter={where}"
    )
    result = subprocess.run(  # noqa: S603 - az found on PATH, arguments are not shell-parsed
        [az, "rest", "--method", "get", "--url", url, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "az rest failed"
        )
    body = json.loads(result.stdout)
    return [parse_time(a["properties"]["createdOn"]) for a in body.get("value", [])]


def main() -> int:
    """Wait if needed; always exit 0 so that the hook itself never blocks a deployment."""
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID", "")
    group = os.environ.get("AZURE_RESOURCE_GROUP") or os.environ.get("RESOURCE_GROUP", "")
    principal = os.environ.get("AZURE_MANAGED_IDENTITY_PRINCIPAL_ID", "")
    if not (subscription and group and principal):
        say("no provisioned environment found (run `azd provision` first); not waiting.")
        return 0
    try:
        settle = float(os.environ.get("RELAY_ROLE_SETTLE_SECONDS") or DEFAULT_SETTLE_SECONDS)
    except ValueError:
        settle = DEFAULT_SETTLE_SECONDS
    az = shutil.which("az")
    if az is None:
        say("the Azure CLI (az) is not installed, so the role assignments cannot be read. " + IF_IT_FAILS)
        return 0
    try:
        created = assignment_times(az, subscription, group, principal)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
        say(f"could not read the identity's role assignments ({exc}). " + IF_IT_FAILS)
        return 0
    if not created:
        say("the identity has no role assignments yet. " + IF_IT_FAILS)
        return 0
    age = (datetime.now(UTC) - max(created)).total_seconds()
    wait = settle - age
    if wait <= 0:
        say(f"the identity's {len(created)} role assignments are {int(age)} s old or more; not waiting.")
        return 0
    say(
        f"the identity's newest role assignment is {max(0, int(age))} s old; waiting {wait:.0f} s more "
        "for Azure to apply it before the package upload (first deployment only)."
    )
    time.sleep(wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
