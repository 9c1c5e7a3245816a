"""The network: isolated subnets only (no NAT gateway), flow logs, and a Secrets Manager
endpoint so the database functions read their credentials without internet access."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    """A VPC over two availability zones with isolated subnets and nothing else."""

    def __init__(self, scope: Construct, construct_id: str, *, log_retention: logs.RetentionDays):
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
        )
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        # The database functions: they may reach the database and the endpoint, nothing else.
        self.database_clients = ec2.SecurityGroup(
            self,
            "DatabaseClients",
            vpc=self.vpc,
            description="Escalator functions that use the database",
            allow_all_outbound=False,
        )
        endpoint_security = ec2.SecurityGroup(
            self,
            "SecretsEndpointSecurity",
            vpc=self.vpc,
            description="Secrets Manager endpoint, reachable from the database functions",
            allow_all_outbound=False,
        )
        endpoint_security.add_ingress_rule(
            self.database_clients, ec2.Port.tcp(443), "database functions read their secret"
        )
        self.database_clients.add_egress_rule(
            endpoint_security, ec2.Port.tcp(443), "to the Secrets Manager endpoint"
        )
        self.vpc.add_interface_endpoint(
            "SecretsManager",
            service=ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
            subnets=self.subnets,
            security_groups=[endpoint_security],
            private_dns_enabled=True,
        )
