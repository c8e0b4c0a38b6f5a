"""The IPAM plugin (``cnivpc-ipam``): VPC IPs for pods from secondary private IPs on the node's
ENIs, through the EC2 API and the instance metadata, with a local container-keyed store.

Work in progress: the store and the host lock exist; the plugin itself is registered as not
built yet (``cnivpc.plugins.NOT_BUILT``). Importing this package imports nothing heavy.
"""
