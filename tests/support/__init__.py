"""The suite's shared fixtures and helpers, one pytest plugin per area, loaded for every test
directory by ``-p`` in pyproject.toml (so no test imports another directory's conftest):

* ``lab`` -- the lab's fabric, nodes and IMDS (``lab``, ``lab_factory``, ``fabric``...).
* ``zipapp`` -- the zipapp built once per session and run as a runtime runs it.
* ``ipam`` -- the IPAM plugin against a lab node (``ipam_node``).
* ``cli`` -- the operator CLI against a lab node (``cli``).
* ``hostile`` -- the hostile-input suites' canary root (``root``), valid config and env.
"""
