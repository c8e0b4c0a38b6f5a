"""The CNI protocol: environment, versions, config and result models, errors and the
dispatcher. A port of the reference library's skel/types/version in our own shape.

Imports nothing of cnivpc outside this package; pydantic is imported only by the modules that
model configs and results (``types``, ``version``), never on the VERSION path.
"""
