"""The CDK constructs and the stack of Escalator."""
