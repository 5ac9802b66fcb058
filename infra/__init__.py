"""The AWS deployment: CloudFormation merged into `chalice package` (`python -m infra.build`)."""
