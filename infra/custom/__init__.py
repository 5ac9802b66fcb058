"""Custom-resource handlers inlined into the template (ZipFile), for what CloudFormation lacks."""
