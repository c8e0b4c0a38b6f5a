"""Wire-level behaviour: EC2's error document, status codes, DryRun and IAM denials.

Error-shape tests post raw Query requests (no botocore) so the exact bytes are visible; the rest
go through botocore, as cnivpc will.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cnivpc.lab.ec2 import Ec2Lab

from .conftest import Endpoint
from .test_strict import error, new_eni

SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ec2/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
AWS_ERROR = re.compile(
    r'^<\?xml version="1\.0" encoding="UTF-8"\?>\n'
    r"<Response><Errors><Error><Code>(?P<code>[^<]+)</Code><Message>(?P<message>[^<]*)</Message>"
    r"</Error></Errors><RequestID>(?P<rid>[0-9a-f-]{36})</RequestID></Response>$"
)


def raw_post(url: str, body: str, *, signed: bool = True) -> tuple[int, dict[str, str], str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if signed:
        headers["Authorization"] = SIGV4
    request = urllib.request.Request(url + "/", data=body.encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_error_document_shape(endpoint: Endpoint) -> None:
    status, headers, body = raw_post(
        endpoint.url,
        "Action=DescribeNetworkInterfaces&Version=2016-11-15&NetworkInterfaceId.1=eni-0123456789abcdef0",
    )
    assert status == 400
    match = AWS_ERROR.match(body)
    if endpoint.lab:
        assert match is not None, body
        assert match["code"] == "InvalidNetworkInterfaceID.NotFound"
        assert match["message"] == "The networkInterface ID 'eni-0123456789abcdef0' does not exist"
        assert headers["x-amzn-requestid"] == match["rid"]
        assert headers["Server"] == "AmazonEC2"
        assert headers["Content-Type"] == "text/xml;charset=UTF-8"
    else:  # moto: xmlns on <Response>, lower-case prologue, "request-id" as the RequestID
        assert match is None
        assert 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"' in body
        assert "<RequestID>request-id</RequestID>" in body


def test_malformed_eni_id(endpoint: Endpoint) -> None:
    with pytest.raises(ClientError) as exc:
        endpoint.client.delete_network_interface(NetworkInterfaceId="to-set")
    if endpoint.lab:
        assert error(exc) == (
            "InvalidNetworkInterfaceId.Malformed",  # lower-case "d", unlike NotFound
            'Invalid id: "to-set" (expecting "eni-...")',
            400,
        )
    else:
        assert error(exc)[0] == "InvalidNetworkInterfaceID.NotFound"


def test_success_answer_carries_the_request_id(lab: Ec2Lab, ec2_client: Any) -> None:
    out = ec2_client.describe_vpcs()
    meta = out["ResponseMetadata"]
    assert meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["RequestId"])


# -- DryRun ----------------------------------------------------------------------------------------
def test_dry_run_reports_and_changes_nothing(endpoint: Endpoint) -> None:
    subnet = endpoint.topo.pod_subnet()
    with pytest.raises(ClientError) as exc:
        endpoint.client.create_network_interface(SubnetId=subnet, DryRun=True)
    assert error(exc) == (
        "DryRunOperation",
        "Request would have succeeded, but DryRun flag is set.",
        412,
    )
    left = endpoint.client.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [subnet]}]
    )["NetworkInterfaces"]
    assert left == []


def test_dry_run_parameter_errors_win(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    with pytest.raises(ClientError) as exc:
        endpoint.client.attach_network_interface(
            NetworkInterfaceId="not-an-eni", InstanceId=node.instance_id, DeviceIndex=1, DryRun=True
        )
    if endpoint.lab:
        assert error(exc)[0] == "InvalidNetworkInterfaceId.Malformed"
    else:  # moto checks DryRun before looking at the parameters
        assert error(exc)[0] == "DryRunOperation"
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    with pytest.raises(ClientError) as exc:
        endpoint.client.attach_network_interface(
            NetworkInterfaceId=eni, InstanceId=node.instance_id, DeviceIndex=0, DryRun=True
        )
    if endpoint.lab:  # device index 0 is the primary's
        assert error(exc)[0] == "InvalidParameterValue"
    else:
        assert error(exc)[0] == "DryRunOperation"


# -- IAM -------------------------------------------------------------------------------------------
def test_denied_action_is_unauthorized(lab: Ec2Lab, ec2_client: Any) -> None:
    from cnivpc.lab.ec2 import topology

    topo = topology.create(lab)
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    lab.control.deny("AssignPrivateIpAddresses", "CreateNetworkInterface")
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=1
        )
    code, message, status = error(exc)
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert re.fullmatch(
        r"You are not authorized to perform this operation\. "
        r"Encoded authorization failure message: [A-Za-z0-9_-]+",
        message,
    )
    # DryRun of a denied call: UnauthorizedOperation, not DryRunOperation.
    with pytest.raises(ClientError) as exc:
        ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), DryRun=True)
    assert error(exc)[:1] == ("UnauthorizedOperation",)
    lab.control.allow("CreateNetworkInterface")
    with pytest.raises(ClientError) as exc:
        ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), DryRun=True)
    assert error(exc)[0] == "DryRunOperation"
    # reset() clears the deny list
    lab.reset()
    assert not lab.control.is_denied("AssignPrivateIpAddresses")


def test_prefix_delegation_is_answered_not_ignored(endpoint: Endpoint) -> None:
    # Once refused with LabNotImplemented; now modelled (tests/lab/test_prefixes.py): the wire
    # answer names the /28 (AssignedIpv4Prefixes), where plain moto silently assigns nothing.
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    out = endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)
    if endpoint.lab:
        assert [p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"]] == ["10.0.16.16/28"]
    else:  # moto: accepted, nothing assigned, nothing said
        assert "AssignedIpv4Prefixes" not in out


def test_unknown_filter_is_a_loud_lab_gap_not_a_500(lab: Ec2Lab, ec2_client: Any) -> None:
    from cnivpc.lab.ec2 import topology

    # moto only trips over a filter it lacks when there is an ENI to evaluate it on.
    ec2_client.create_network_interface(SubnetId=topology.create(lab).pod_subnet())
    with pytest.raises(ClientError) as exc:
        ec2_client.describe_network_interfaces(
            Filters=[{"Name": "ipv6-addresses.ipv6-address", "Values": ["::1"]}]
        )
    code, _message, status = error(exc)
    assert (code, status) == ("LabNotImplemented", 400)  # botocore does not retry it


def test_network_card_index_must_exist(lab: Ec2Lab, ec2_client: Any) -> None:
    from cnivpc.lab.ec2 import topology

    topo = topology.create(lab)
    node = topo.run_instance("c5.xlarge")  # one network card
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    with pytest.raises(ClientError) as exc:
        ec2_client.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterfaceId"],
            InstanceId=node.instance_id,
            DeviceIndex=1,
            NetworkCardIndex=1,
        )
    assert error(exc)[0] == "InvalidParameterValue"


def test_unsigned_query_still_reaches_ec2(lab: Ec2Lab) -> None:
    # moto alone would route an unsigned request to S3; the lab is an EC2 endpoint only.
    status, _headers, body = raw_post(
        lab.url, "Action=DescribeVpcs&Version=2016-11-15", signed=False
    )
    assert status == 200 and "<DescribeVpcsResponse" in body
