"""RDS PostgreSQL: private, encrypted, TLS only, credentials generated into Secrets Manager.

Its lifecycle: with ``db_removal_policy`` = ``retain`` the instance, its subnet group and
its master secret are ``RetainExceptOnCreate``: kept when a stack update replaces them or
the stack is deleted, deleted when the deploy that created them rolls back. Deletion
protection is switched on by ``DeletionProtection`` once the rest of the stack exists,
since CloudFormation cannot delete a protected instance while it rolls back.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from infra.network import Network
from infra.retention import retention
from infra.settings import StackSettings

ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17)
DATABASE_NAME = "escalator"
MASTER_USER = "escalator"
PORT = 5432
_REMOVAL = {
    "retain": RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
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
        # The master password outlives the instance it opens (or its final snapshot), and
        # goes with it when the deploy that created both rolls back.
        master = rds.DatabaseSecret(self, "MasterSecret", username=MASTER_USER)
        master.apply_removal_policy(
            RemovalPolicy.DESTROY
            if settings.db_removal_policy == "destroy"
            else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
        )
        removal = _REMOVAL[settings.db_removal_policy]
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
            removal_policy=removal,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=retention(settings.log_retention_days),
            # The runtime functions sign in as the application role with IAM tokens.
            iam_authentication=True,
        )
        if settings.db_deletion_protection:
            # Not in the template: ``DeletionProtection`` switches it on after the rest of
            # the stack. Absent, not false: CloudFormation sends the property with every
            # update of the instance, and a false would switch the protection off again.
            instance = cast(rds.CfnDBInstance, self.instance.node.default_child)
            instance.add_property_deletion_override("DeletionProtection")
        if removal is RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE:
            # CDK passes only RETAIN on to the subnet group (aws/aws-cdk#37780); a retained
            # instance still uses its subnet group, which therefore cannot be deleted.
            subnet_group = cast(rds.SubnetGroup, self.instance.node.find_child("SubnetGroup"))
            subnet_group.apply_removal_policy(removal)
        secret = self.instance.secret
        assert secret is not None
        self.secret = secret
        self.database_name = DATABASE_NAME


class DeletionProtection(Construct):
    """Switches the instance's deletion protection on, as the last step of a deploy.

    CloudFormation's rollback of a failed create deletes the instance with DeleteDBInstance
    and fails on a protected one (the stack ends ROLLBACK_FAILED, the instance stays). So
    the template leaves the property out and this custom resource sets it with
    ModifyDBInstance (allowed on this one instance only) once ``after`` made it depend on
    every other resource: when it runs, nothing else is left to fail. Removing it (the
    stack's deletion, or the setting turned off) leaves the protection as it is; with the
    setting off, the template's ``DeletionProtection: false`` switches it off.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        instance: rds.DatabaseInstance,
        log_retention: logs.RetentionDays,
    ):
        super().__init__(scope, construct_id)
        identifier = instance.instance_identifier
        switch_on = cr.AwsSdkCall(
            service="RDS",
            action="modifyDBInstance",
            parameters={
                "DBInstanceIdentifier": identifier,
                "DeletionProtection": True,
                "ApplyImmediately": True,
            },
            physical_resource_id=cr.PhysicalResourceId.of(identifier),
            # The whole answer describes the instance; a custom resource may return 4 KB.
            output_paths=["DBInstance.DBInstanceIdentifier"],
        )
        self.resource = cr.AwsCustomResource(
            self,
            "Switch",
            on_create=switch_on,
            on_update=switch_on,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["rds:ModifyDBInstance"], resources=[instance.instance_arn]
                    )
                ]
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )

    def after(self, constructs: list[IConstruct]) -> None:
        """Run only once every resource under ``constructs`` exists (this one's own
        provider function is left out: it depends on this construct's log group)."""
        custom_resource = self.resource.node.find_child("Resource")
        for construct in constructs:
            if construct is not self and not is_sdk_call_provider(construct):
                custom_resource.node.add_dependency(construct)


def is_sdk_call_provider(construct: IConstruct) -> bool:
    """The singleton function CDK creates at stack level for ``AwsCustomResource``."""
    uuid = cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
    return construct.node.id.endswith(uuid)
