"""EC2 API errors as the lab answers them: code, HTTP status and AWS's exact message text.

Owns :class:`Ec2Error` and one constructor per catalogue entry (aws-reference.md §3.2). Clients
match ``InvalidParameterValue`` on its *message* (the code is overloaded), so messages here are
byte-exact copies of what AWS was seen to send; entries marked [inf] in the spec are policy choices
and say so. Imports only the stdlib: rules, middleware and pagination all raise these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ec2Error(Exception):
    """One EC2 error answer. ``status`` is the HTTP status the wire carries."""

    code: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


# -- capacity ------------------------------------------------------------------------------------
def private_ip_limit_exceeded() -> Ec2Error:
    # wire: vpc-cni #989 CloudTrail, cilium #36428.
    return Ec2Error(
        "PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit."
    )


def interface_ip_limit_exceeded(eni_id: str, instance_type: str) -> Ec2Error:
    # doc ERR lists the code for attach/launch; the text is ours [inf].
    return Ec2Error(
        "InvalidInterface.IpAddressLimitExceeded",
        f"Interface '{eni_id}' has more private IPv4 addresses than {instance_type} allows "
        "per network interface.",
    )


def attachment_limit_exceeded(count: int, instance_type: str) -> Ec2Error:
    # wire: cilium #8830 / #15877, knife-ec2 #375. ``count`` includes the ENI being attached.
    return Ec2Error(
        "AttachmentLimitExceeded", f"Interface count {count} exceeds the limit for {instance_type}"
    )


def insufficient_free_addresses() -> Ec2Error:
    # wire: vpc-cni #1739 (AssignPrivateIpAddresses).
    return Ec2Error(
        "InsufficientFreeAddressesInSubnet",
        "The specified subnet does not have enough free addresses to satisfy the request.",
    )


def create_insufficient_addresses() -> Ec2Error:
    # wire: vpc-cni #3105, cilium PR #31016 (CreateNetworkInterface).
    return Ec2Error(
        "InvalidParameterValue", "There aren't sufficient free Ipv4 addresses or prefixes"
    )


def insufficient_cidr_blocks() -> Ec2Error:
    # wire: vpc-cni #1836 (Assign/Create with prefixes when no free aligned /28 is left).
    return Ec2Error(
        "InsufficientCidrBlocks",
        "The specified subnet does not have enough free cidr blocks to satisfy the request.",
    )


def prefixes_not_supported(instance_type: str) -> Ec2Error:
    # [inf] text: only Nitro-based types (and bare metal, which runs on Nitro) take prefixes;
    # clients check the type first (VPC CNI's IsPrefixDelegationSupported), so the wire text is
    # rarely seen. The code is EC2's usual one for a feature the type lacks.
    return Ec2Error(
        "InvalidParameterValue",
        f"IPv4 prefix delegation is not supported for the instance type '{instance_type}'.",
    )


# -- attachment ----------------------------------------------------------------------------------
def device_index_in_use(instance_id: str, device_index: int) -> Ec2Error:
    # wire: terraform-provider-aws PR #906, k8s-vpcnet #71 (note: not an ...InUse code).
    return Ec2Error(
        "InvalidParameterValue",
        f"Instance '{instance_id}' already has an interface attached at device index "
        f"'{device_index}'.",
    )


def interface_in_use_attach(eni_id: str) -> Ec2Error:
    # wire for RunInstances (terraform-provider-aws #27513); same for Attach [inf].
    return Ec2Error("InvalidNetworkInterface.InUse", f"Interface: [{eni_id}] in use.")


def eni_currently_in_use(eni_id: str) -> Ec2Error:
    # wire: vpc-cni #1399 CloudTrail, cloud-nuke PR #1132 (DeleteNetworkInterface).
    return Ec2Error("InvalidParameterValue", f"Network interface '{eni_id}' is currently in use.")


def detach_primary() -> Ec2Error:
    # wire: cloud-governance PR #952.
    return Ec2Error(
        "OperationNotPermitted",
        "The network interface at device index 0 and networkCard index 0 cannot be detached.",
    )


def attachment_not_found(attachment_id: str) -> Ec2Error:
    # doc ERR names the code; the text follows EC2's "... does not exist" pattern [inf].
    return Ec2Error(
        "InvalidAttachmentID.NotFound", f"The attachment ID '{attachment_id}' does not exist"
    )


def attachment_id_malformed(attachment_id: str) -> Ec2Error:
    return Ec2Error(
        "InvalidNetworkInterfaceAttachmentId.Malformed",
        f'Invalid id: "{attachment_id}" (expecting "eni-attach-...")',
    )


def availability_zone_mismatch() -> Ec2Error:
    # [inf] code and text (not in the spec's catalogue); EC2 refuses cross-AZ attachments.
    return Ec2Error(
        "InvalidParameterCombination",
        "You may not attach a network interface to an instance if they are not in the same "
        "availability zone",
    )


def instance_not_found(instance_id: str) -> Ec2Error:
    return Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")


def invalid_network_card(index: int, instance_type: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"Network card index '{index}' is not valid for instance type {instance_type}.",
    )


# -- identifiers ---------------------------------------------------------------------------------
def eni_not_found(eni_id: str) -> Ec2Error:
    # wire: terraform-provider-aws #35568. Capital "ID"; VPC CNI extracts the quoted id.
    return Ec2Error(
        "InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID '{eni_id}' does not exist"
    )


def eni_id_malformed(eni_id: str) -> Ec2Error:
    # wire: F5 cloud-failover #150. Lower-case "d" in the code, unlike NotFound.
    return Ec2Error(
        "InvalidNetworkInterfaceId.Malformed", f'Invalid id: "{eni_id}" (expecting "eni-...")'
    )


def subnet_not_found(subnet_id: str) -> Ec2Error:
    return Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist")


# -- addresses -----------------------------------------------------------------------------------
def address_in_use() -> Ec2Error:
    # wire: pulumi-aws #2169 (Create); same code for Assign without AllowReassignment [inf].
    return Ec2Error("InvalidIPAddress.InUse", "The specified address is already in use.")


def address_not_in_subnet(address: str, subnet_id: str) -> Ec2Error:
    # [inf] text.
    return Ec2Error(
        "InvalidParameterValue",
        f"Address {address} does not fall within the subnet's address range ({subnet_id}).",
    )


def address_reserved(address: str) -> Ec2Error:
    # [inf] text: AWS keeps the first four and the last address of every subnet.
    return Ec2Error(
        "InvalidParameterValue", f"Address {address} is in subnet's reserved address range"
    )


def address_malformed(address: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", f"Invalid private IP address: {address}")


def unassign_not_assigned(eni_id: str) -> Ec2Error:
    # wire-derived (clients match this exact text); the whole call fails.
    return Ec2Error(
        "InvalidParameterValue",
        f"Some of the specified addresses are not assigned to interface {eni_id}",
    )


def unassign_primary() -> Ec2Error:
    # "code comments only; verify": leading "..." of the observed text is EC2's sentence prefix.
    return Ec2Error(
        "InvalidParameterValue",
        "Some of the specified addresses are not valid for this operation. "
        "The primary IP address of an interface cannot be unassigned.",
    )


# -- prefixes (all [inf] texts; codes as for single addresses) -----------------------------------
def prefix_malformed(prefix: str) -> Ec2Error:
    # not a CIDR, host bits set (not aligned on 16), or not a /28
    return Ec2Error(
        "InvalidParameterValue",
        f"Invalid IPv4 prefix: {prefix}. A prefix must be a /28 network (aligned on 16 addresses).",
    )


def prefix_not_in_subnet(prefix: str, subnet_id: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"Prefix {prefix} does not fall within the subnet's address range ({subnet_id}).",
    )


def prefix_reserved(prefix: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue", f"Prefix {prefix} overlaps the subnet's reserved address range"
    )


def prefix_in_use(prefix: str) -> Ec2Error:
    return Ec2Error(
        "InvalidIPAddress.InUse",
        f"The specified prefix {prefix} overlaps an address or a prefix already in use.",
    )


def unassign_prefix_not_assigned(eni_id: str) -> Ec2Error:
    # the same sentence EC2 uses for addresses, which clients match
    return Ec2Error(
        "InvalidParameterValue",
        f"Some of the specified prefixes are not assigned to interface {eni_id}",
    )


# -- parameters ----------------------------------------------------------------------------------
def parameter_combination(message: str) -> Ec2Error:
    return Ec2Error("InvalidParameterCombination", message)


def missing_parameter(name: str) -> Ec2Error:
    return Ec2Error("MissingParameter", f"The request must contain the parameter {name}")


def invalid_parameter_value(message: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", message)


def max_results_too_small(value: int, minimum: int) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"Value ( {value} ) for parameter maxResults is invalid. "
        f"Expecting a value greater than {minimum - 1}.",
    )


def max_results_too_large(value: int, maximum: int) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"Value ( {value} ) for parameter maxResults is invalid. "
        f"Expecting a value less than or equal to {maximum}.",
    )


def invalid_next_token(token: str) -> Ec2Error:
    return Ec2Error("InvalidNextToken", f"The token '{token}' is invalid.")


def lab_not_implemented(what: str) -> Ec2Error:
    # Not an AWS code: a lab gap must be loud and must not look retryable (botocore retries 5xx).
    return Ec2Error("LabNotImplemented", f"The cnivpc lab does not implement {what}.", 400)


# -- gates (throttling, authorization, DryRun) -----------------------------------------------------
def request_limit_exceeded() -> Ec2Error:
    # HTTP 503: botocore's legacy retry policy matches code *and* status.
    return Ec2Error("RequestLimitExceeded", "Request limit exceeded.", 503)


def dry_run_ok() -> Ec2Error:
    return Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def unauthorized(encoded: str | None) -> Ec2Error:
    base = "You are not authorized to perform this operation."
    if encoded:
        base += f" Encoded authorization failure message: {encoded}"
    return Ec2Error("UnauthorizedOperation", base, 403)


def idempotent_parameter_mismatch(token: str) -> Ec2Error:
    """A ClientToken reused with other parameters (AWS: 400 IdempotentParameterMismatch)."""
    return Ec2Error(
        "IdempotentParameterMismatch",
        f"The client token '{token}' has already been used with different parameters.",
    )


# -- IPv6 (all [inf] texts; codes as for IPv4 where EC2 has no IPv6-specific one) ----------------
def subnet_without_ipv6(subnet_id: str) -> Ec2Error:
    # Assign/Create asking for IPv6 in a subnet with no IPv6 CIDR (moto answers HTTP 500).
    return Ec2Error(
        "InvalidParameterValue", f"Subnet {subnet_id} does not have an associated IPv6 CIDR block."
    )


def ipv6_limit_exceeded() -> Ec2Error:
    # Same code as IPv4's limit (clients key on it); counts addresses and /80 prefixes.
    return Ec2Error(
        "PrivateIpAddressLimitExceeded", "Number of IPv6 addresses will exceed limit."
    )


def interface_ipv6_limit_exceeded(eni_id: str, instance_type: str) -> Ec2Error:
    # the attach-time code of IPv4, for the IPv6 budget
    return Ec2Error(
        "InvalidInterface.IpAddressLimitExceeded",
        f"Interface '{eni_id}' has more IPv6 addresses and prefixes than {instance_type} "
        "allows per network interface.",
    )


def ipv6_not_supported(instance_type: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue", f"IPv6 is not supported for the instance type '{instance_type}'."
    )


def ipv6_prefixes_not_supported(instance_type: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"IPv6 prefix delegation is not supported for the instance type '{instance_type}'.",
    )


def ipv6_address_malformed(address: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", f"Invalid IPv6 address: {address}")


def ipv6_prefix_malformed(prefix: str) -> Ec2Error:
    return Ec2Error(
        "InvalidParameterValue",
        f"Invalid IPv6 prefix: {prefix}. A prefix must be a /80 network.",
    )


def unassign_ipv6_not_assigned(eni_id: str) -> Ec2Error:
    # the IPv4 sentence clients match, for the IPv6 call
    return Ec2Error(
        "InvalidParameterValue",
        f"Some of the specified addresses are not assigned to interface {eni_id}",
    )


def prefix_list_not_found(prefix_list_id: str) -> Ec2Error:
    return Ec2Error(
        "InvalidPrefixListID.NotFound", f"The prefix list ID '{prefix_list_id}' does not exist"
    )
