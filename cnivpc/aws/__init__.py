"""The AWS layer: the instance metadata (IMDSv2, stdlib only) and the EC2 API (botocore, the
only importer of it, loaded lazily and only on paths that call EC2). Importing this package
imports nothing."""
