"""RDS PostgreSQL: private, encrypted, TLS only, credentials generated into Secrets Manager."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from constructs import Construct

from infra.network import Network
from infra.retention import retention
from infra.settings import StackSettings

ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17)
DATABASE_NAME = "escalator"
MASTER_USER = "escalator"
PORT = 5432
_REMOVAL = {
    "retain": RemovalPolicy.RETAIN,
    "snapshot": RemovalPolicy.SNAPSHOT,
    "destroy": RemovalPolicy.DESTROY,
}


class Database(Construct):
    """The database; only ``network.database_clients`` may reach its port."""

    def __init__(
        self, scope: Construct, construct_id: str, *, network: Network, settings: StackSettings
    ):
        super().__init__(scope, construct_id)
        security = ec2.SecurityGroup(
            self,
            "Security",
            vpc=network.vpc,
            description="Escalator database: PostgreSQL from the database functions only",
            allow_all_outbound=False,
        )
        security.add_ingress_rule(
            network.database_clients, ec2.Port.tcp(PORT), "database functions"
        )
        network.database_clients.add_egress_rule(security, ec2.Port.tcp(PORT), "to PostgreSQL")
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=ENGINE,
            description="Escalator: TLS only",
            parameters={"rds.force_ssl": "1"},
        )
        # The master password of a retained instance must outlive a failed first deploy:
        # the secret goes only when the instance does.
        master = rds.DatabaseSecret(self, "MasterSecret", username=MASTER_USER)
        master.apply_removal_policy(
            RemovalPolicy.DESTROY
            if settings.db_removal_policy == "destroy"
            else RemovalPolicy.RETAIN
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=ENGINE,
            instance_type=ec2.InstanceType(settings.db_instance_class),
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=[security],
            port=PORT,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_secret(master, username=MASTER_USER),
            parameter_group=parameters,
            publicly_accessible=False,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=settings.db_allocated_storage_gib,
            max_allocated_storage=settings.db_max_allocated_storage_gib,
            multi_az=settings.db_multi_az,
            backup_retention=Duration.days(settings.db_backup_retention_days),
            deletion_protection=settings.db_deletion_protection,
            removal_policy=_REMOVAL[settings.db_removal_policy],
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=retention(settings.log_retention_days),
            # The runtime functions sign in as the application role with IAM tokens.
            iam_authentication=True,
        )
        secret = self.instance.secret
        assert secret is not None
        self.secret = secret
        self.database_name = DATABASE_NAME
