"""Rules for what makes a first `azd up` fail or a deployment run worse: properties Flex Consumption
refuses, the azd-service-name tag on more than the site, a region without Flex Consumption, and a
redelivery queue whose poison queue cannot exist. Each returns a list of problems."""

from __future__ import annotations

import re
from typing import Any

from shared import settings as relay_settings
from tests.infra_model import MAIN, SITE, Ref, Template, azure_yaml_service, body, follow, unquote

# siteConfig properties a Flex Consumption site refuses ("The following site configuration property
# (Site.SiteConfig.FtpsState) for Flex Consumption sites is invalid"), compared case-insensitively.
FLEX_REJECTED_SITE_CONFIG = frozenset(
    {
        "ftpsState",
        "use32BitWorkerProcess",
        "netFrameworkVersion",
        "functionsRuntimeScaleMonitoringEnabled",
        "functionAppScaleLimit",
        "linuxFxVersion",
        "windowsFxVersion",
        "preWarmedInstanceCount",
    }
)

AZD_SERVICE_TAG = "azd-service-name"
POISON_SUFFIX = "-poison"  # the Functions host's poison queue is <queue name>-poison
QUEUE_NAME_LENGTH = (3, 63)  # a storage queue name's bounds


def decorator(param: dict, kind: str) -> Any:
    """The argument of a parameter's decorator of `kind` (pycep's snake_case name), or None."""
    return next((d["argument"] for d in param.get("decorators", []) if d["type"] == kind), None)


def check_flex_site_config(t: Template) -> list[str]:
    rejected = {name.lower() for name in FLEX_REJECTED_SITE_CONFIG}
    problems = []
    for file, symbol, res in t.resources(SITE):
        site_config = res.get("properties", {}).get("siteConfig", {})
        for key in site_config:
            if unquote(key).lower() in rejected:
                problems.append(
                    f"{file}:{symbol} sets siteConfig.{unquote(key)}, which Flex Consumption sites refuse"
                )
    for file, symbol, res in t.resources("Microsoft.Web/sites/config"):
        for key in res.get("properties", {}) if res.get("name") == "web" else {}:
            if unquote(key).lower() in rejected:
                problems.append(f"{file}:{symbol} sets {unquote(key)}, which Flex Consumption sites refuse")
    return problems


def tag_value(t: Template, file: str, tags: Any, key: str) -> Ref | None:
    """Where the tag `key` of a `tags:` expression comes from, through variables, parameters and
    union(); None when the expression does not set it."""
    if tags is None:
        return None
    ref = follow(t, file, tags)
    value = ref.literal
    if isinstance(value, dict) and value.get("function", {}).get("type") == "union":
        for arg in value["function"]["parameters"].values():
            found = tag_value(t, ref.file, arg, key)
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for name, item in value.items():
            if unquote(name) == key:
                return follow(t, ref.file, item)
    return None


def check_azd_service_tag(t: Template) -> list[str]:
    """azd before 1.23.4 fails with "expecting only '1' resource tagged with 'azd-service-name'"."""
    tagged = []
    for file, doc in t.files.items():
        for symbol, res in doc.get("resources", {}).items():
            if res.get("existing"):
                continue
            ref = tag_value(t, file, body(res).get("tags"), AZD_SERVICE_TAG)
            if ref is not None:
                tagged.append((f"{file}:{symbol}", res["type"], ref))
    problems = []
    if [rtype for _, rtype, _ in tagged] != [SITE]:
        problems.append(
            f"only the function app may carry the {AZD_SERVICE_TAG} tag (older azd releases fail on "
            f"two); found on {[where for where, _, _ in tagged]}"
        )
    service = azure_yaml_service(t.root)
    for _, rtype, ref in tagged:
        if rtype == SITE and ref.literal != service:
            problems.append(f"the function app's {AZD_SERVICE_TAG} tag must name the service in azure.yaml")
    return problems


def check_location(t: Template) -> list[str]:
    problems = []
    location = t.doc(MAIN)["parameters"].get("location", {})
    regions = decorator(location, "allowed") or []
    if not regions:
        problems.append("main.bicep's location must be @allowed only the regions that offer Flex Consumption")
    malformed = [
        r for r in regions if not re.fullmatch(r"[a-z]+[a-z0-9]*", str(r)) or str(r).endswith("euap")
    ]
    if malformed:
        problems.append(f"location allows names that are not public Azure regions: {malformed}")
    if (decorator(location, "metadata") or {}).get("azd", {}).get("type") != "location":
        problems.append("location needs @metadata({azd: {type: 'location'}}) so that azd offers the regions")
    for file, doc in t.files.items():
        for name, param in doc.get("parameters", {}).items():
            allowed = decorator(param, "allowed") or []
            if (file, name) != (MAIN, "location") and set(map(str, allowed)) & set(regions):
                problems.append(
                    f"{file}: parameter {name} repeats the Flex region list; keep it in one place"
                )
    return problems


def check_queue_name(t: Template) -> list[str]:
    param = t.doc(MAIN)["parameters"].get("deliveryQueueName", {})
    low, high = QUEUE_NAME_LENGTH
    bounds = (decorator(param, "min_length"), decorator(param, "max_length"))
    problems = []
    if bounds != (low, high - len(POISON_SUFFIX)):
        problems.append(
            f"deliveryQueueName must be @minLength({low}) @maxLength({high - len(POISON_SUFFIX)}): a queue "
            f"name has {low}-{high} characters and <name>{POISON_SUFFIX} must be one too; got {bounds}"
        )
    default = param.get("default")
    if not isinstance(default, str) or not relay_settings._QUEUE_NAME.fullmatch(default):
        problems.append(f"deliveryQueueName's default {default!r} is not a queue name the relay accepts")
    return problems
