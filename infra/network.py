"""The network: a dual-stack VPC with private subnets only (no NAT gateway, no interface
endpoint, no internet gateway), flow logs. The functions in it reach the database, and
those that call an AWS API reach its dual-stack endpoint over IPv6 through an
egress-only internet gateway: a way out with no hourly charge, and no way in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

HTTPS = 443


class Network(Construct):
    """A dual-stack VPC over two availability zones: private subnets whose one route out
    is IPv6 through an egress-only internet gateway; nothing reaches in."""

    def __init__(self, scope: Construct, construct_id: str, *, log_retention: logs.RetentionDays):
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            # An Amazon-provided IPv6 block, a /64 of it for each subnet. For private
            # subnets CDK adds the egress-only internet gateway and their ::/0 routes;
            # without a NAT gateway there is no IPv4 route out.
            ip_protocol=ec2.IpProtocol.DUAL_STACK,
            # CDK would attach one, though nothing routes to it, for subnets not isolated.
            create_internet_gateway=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    # Named when they were isolated: the name is in the subnets' logical
                    # ids, and renaming would replace them under the database.
                    name="isolated",
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=24,
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
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        # The database functions: they may reach the database, nothing else.
        self.database_clients = ec2.SecurityGroup(
            self,
            "DatabaseClients",
            vpc=self.vpc,
            description="Escalator functions that use the database",
            allow_all_outbound=False,
        )
        # The functions that call an AWS API: HTTPS to its dual-stack endpoint over IPv6
        # (the only way out the subnets route), in addition to the database clients' group.
        self.aws_api_clients = ec2.SecurityGroup(
            self,
            "AwsApiClients",
            vpc=self.vpc,
            description="Escalator functions that call AWS APIs (dual-stack endpoints, IPv6)",
            allow_all_outbound=False,
            allow_all_ipv6_outbound=False,
        )
        self.aws_api_clients.add_egress_rule(
            ec2.Peer.any_ipv6(), ec2.Port.tcp(HTTPS), "AWS APIs over IPv6"
        )
