"""Worker-side glue: the cluster policy that attaches the check, and the pre-execute hook."""
