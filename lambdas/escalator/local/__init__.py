"""Running Escalator on one machine: helpers shared by the local stack and the tests.

Nothing here is deployed to Lambda.
"""
