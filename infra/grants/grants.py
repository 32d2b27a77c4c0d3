"""The function's grants, tested: the Lambda binary runs its paths with credentials that hold
exactly the policy template.yaml gives the function, on moto (server mode, in this process) with
IAM enforced. Any request the policy does not allow fails the run, naming the action.

The policy is rendered from template.yaml itself: the function's `Policies` with !Ref, !Sub,
!GetAtt, !If and the conditions evaluated against this run's resources (two renders: a source in
the same account, and a source read through an assumed role with an external ID, whose role is
made from infra/aws/source-role-*.json). The function's environment comes from the template too.
Paths run, each through the Lambda binary under a local Runtime API (infra/lambda_runtime.py)
with moto's SQS as the trigger: a notification batch (reports and rejects written, the API key
read from Secrets Manager at start, the converter read), a continuation (an import paused by its
deadline and continued from the queue), a scheduled scan that queues the objects it finds, an
invocation killed mid-import whose notice is handed back, the same through the cross-account
role; last `s3-import check --role-arn` as a role holding the same policy (every check must
pass, and with --drop its FAIL lines show what check reports).

Moto checks the action of each request but not every resource, and names some actions by their
API call where IAM names them otherwise; the hooks below make it check as IAM does: DynamoDB
requests against the table's ARN, transactions as the actions of their items (PutItem,
UpdateItem, ConditionCheckItem, ...), PartiQL statements as PartiQLInsert (Select, Update,
Delete) on their tables, SQS batch calls as their single actions, Secrets Manager
against the secret's ARN, a trust policy's StringEquals on a key the request lacks (the external
ID) as a refusal. Moto's PartiQL takes no parameters in an INSERT and overwrites an existing
key; a hook runs the dedupe's parameterized INSERTs as DynamoDB does (DuplicateItem when the key
exists). Signatures are not checked (the Rust SDK's streaming uploads are signed
in a form moto does not recompute); the access key still decides whose policy applies.

Usage: grants.py S3_IMPORT_BIN S3_IMPORT_LAMBDA_BIN [--drop ACTION ...]
  --drop dynamodb:BatchGetItem   takes that action out of the rendered policy: the run must fail
                                 naming it (the check that this test can fail)
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import boto3
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "infra"))
from lambda_runtime import Function, InvocationLost, settle, sqs_records  # noqa: E402

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
PREFIX = "events/"
API_KEY = "grants-api-key"
EXTERNAL_ID = "grants-external-id"
CONVERTER = {"converterConfig": {"fileType": "json", "compressionType": "auto",
                                 "convertToAmplitudeFunc": {"insert_id": "id", "event_type": "type",
                                                            "device_id": "device", "time": "ts"}}}

# ---------------------------------------------------------------- the template, rendered

NO_VALUE = object()


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read as their long forms."""


def _tag(tag):
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}
    CfnLoader.add_constructor(f"!{tag}", construct)


for _t in ["Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "FindInMap", "Join", "Select",
           "Split", "Condition", "Base64", "ImportValue", "GetAZs"]:
    _tag(_t)


class Template:
    """template.yaml evaluated for one set of parameters and resource names."""

    def __init__(self, path, params, resources):
        with open(path) as f:
            self.doc = yaml.load(f, Loader=CfnLoader)
        self.params = {k: str(v.get("Default", "")) for k, v in self.doc["Parameters"].items()}
        unknown = set(params) - set(self.params)
        assert not unknown, f"not parameters of the template: {unknown}"
        self.params.update(params)
        # name → {"Ref": value, attribute: value}
        self.resources = resources
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.eval(self.doc["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name):
        pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            return self.resources[name]["Ref"]
        raise KeyError(f"!Ref {name}: no such parameter or resource in this run")

    def get_att(self, resource, attr):
        try:
            return self.resources[resource][attr]
        except KeyError:
            raise KeyError(f"!GetAtt {resource}.{attr}: not given to this run") from None

    def sub(self, text, variables):
        def one(m):
            name = m.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def eval(self, x):
        if isinstance(x, list):
            return [v for v in (self.eval(i) for i in x) if v is not NO_VALUE]
        if not isinstance(x, dict):
            return x
        if len(x) == 1:
            (k, v), = x.items()
            if k == "Ref":
                return self.ref(v)
            if k == "Fn::Sub":
                text, variables = (v, {}) if isinstance(v, str) else (v[0], self.eval(v[1]))
                return self.sub(text, variables)
            if k == "Fn::GetAtt":
                return self.get_att(*v)
            if k == "Fn::If":
                return self.eval(v[1] if self.condition(v[0]) else v[2])
            if k == "Fn::Equals":
                a, b = self.eval(v)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self.eval(v[0])
            if k == "Fn::And":
                return all(self.eval(v))
            if k == "Fn::Or":
                return any(self.eval(v))
            if k == "Condition":
                return self.condition(v)
            if k == "Fn::FindInMap":
                m, a, b = self.eval(v)
                return self.doc["Mappings"][m][str(a)][b]
            if k.startswith("Fn::"):
                raise ValueError(f"{k}: not understood by this test's renderer")
        return {k: e for k, e in ((k, self.eval(v)) for k, v in x.items()) if e is not NO_VALUE}

    def function_policies(self):
        """The function's policy documents (its `Policies`, evaluated)."""
        docs = self.eval(self.doc["Resources"]["ImporterFunction"]["Properties"]["Policies"])
        for d in docs:
            if not (isinstance(d, dict) and "Statement" in d):
                raise ValueError(f"a policy this test cannot grant (managed or SAM template): {d}")
        return docs

    def function_environment(self):
        env = self.doc["Resources"]["ImporterFunction"]["Properties"]["Environment"]["Variables"]
        return {k: str(v) for k, v in self.eval(env).items()}


def drop_actions(docs, drop):
    """The documents without the actions in `drop` (statements and documents left empty
    removed)."""
    out = []
    for d in docs:
        statements = []
        for s in d["Statement"]:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            kept = [a for a in actions if a not in drop]
            if kept:
                statements.append(dict(s, Action=kept))
        if statements:
            out.append(dict(d, Statement=statements))
    return out


def listed(x):
    return x if isinstance(x, list) else [x]


def actions_of(docs):
    return sorted({a for d in docs for s in d["Statement"] for a in listed(s["Action"])})


def grants_of(docs):
    """(action, resource pattern) of every Allow statement."""
    return sorted({(a, r) for d in docs for s in d["Statement"] if s["Effect"] == "Allow"
                   for a in listed(s["Action"]) for r in listed(s["Resource"])})


# ---------------------------------------------------------------- moto, checking as IAM does

class Audit:
    """Every authorization moto decided for the principals under test."""

    def __init__(self):
        self.lock = threading.Lock()
        self.allowed = set()
        self.denied = []
        self.watched = ()  # ARN fragments of the principals under test

    def note(self, principal, action, resource, ok):
        if not any(w in principal for w in self.watched):
            return
        with self.lock:
            if ok:
                self.allowed.add((action, resource))
            else:
                self.denied.append((principal, action, resource))


def start_moto(audit):
    """moto's server in this process, on a free loopback port, with IAM as IAM checks it."""
    from moto.core import authorization
    from moto.iam import access_control
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    def check_signature(self):
        pass  # see the module's text: the access key still picks the policy

    access_control.IAMRequestBase.check_signature = check_signature

    original_permitted = access_control.IAMRequestBase.check_action_permitted

    def check_action_permitted(self, resource):
        try:
            original_permitted(self, resource)
        except Exception:
            audit.note(self._access_key.arn, self._action, resource, False)
            raise
        audit.note(self._access_key.arn, self._action, resource, True)

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted

    # A trust policy's condition on a key the request does not carry fails, as in IAM (moto
    # lets it pass): the source role's sts:ExternalId must really be sent.
    from moto.iam import policy_conditions
    original_verify = policy_conditions.TrustCondition.verify_condition

    def verify_condition(self, actual_values):
        if not actual_values and self._condition in policy_conditions.CONDITION_OPERATIONS:
            return False
        return original_verify(self, actual_values)

    policy_conditions.TrustCondition.verify_condition = verify_condition

    # IAM authorizes HeadBucket as s3:ListBucket (there is no s3:HeadBucket action); moto
    # names it after the call.
    from moto.s3 import responses as s3_responses
    s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"

    def with_action(cls, action):
        class Request(cls):
            def __init__(self, **kw):
                kw["action"] = action
                super().__init__(**kw)
        return Request

    transact = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
    sqs_single = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                  "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}

    # PartiQL: IAM authorizes each statement by its verb, on its table.
    partiql = {"INSERT": "PartiQLInsert", "SELECT": "PartiQLSelect", "UPDATE": "PartiQLUpdate",
               "DELETE": "PartiQLDelete"}

    def statement_check(text):
        verb = text.split(None, 1)[0].upper()
        table = re.search(r'(?:INTO|FROM|UPDATE)\s+"([^"]+)"', text, re.IGNORECASE)
        return (partiql.get(verb, verb), table_arn(table.group(1) if table else "*"))

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    original_batch = DynamoDBBackend.batch_execute_statement

    def batch_execute_statement(self, statements):
        pattern = re.compile(r'^INSERT INTO "([^"]+)" VALUE \{(.*)\}$', re.IGNORECASE | re.DOTALL)
        if not all(pattern.match(st["Statement"]) and "?" in st["Statement"] for st in statements):
            return original_batch(self, statements)
        responses = []
        for st in statements:
            table_name, fields = pattern.match(st["Statement"]).groups()
            names = re.findall(r"'([^']+)'\s*:\s*\?", fields)
            item = dict(zip(names, st.get("Parameters", [])))
            table = self.get_table(table_name)
            if table.get_item(DynamoType(item[table.hash_key_attr]), None) is not None:
                responses.append({"TableName": table_name, "Error": {
                    "Code": "DuplicateItem", "Message": "Duplicate primary key exists in table"}})
            else:
                table.put_item(item)
                responses.append({"TableName": table_name})
        return responses

    DynamoDBBackend.batch_execute_statement = batch_execute_statement

    def table_arn(name):
        return name if name.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    def checks(response, resource):
        """(action, resource) pairs IAM would check for this request."""
        action = response._get_action()
        module = type(response).__module__
        if module.startswith("moto.dynamodb."):
            body = response.body if isinstance(response.body, dict) else json.loads(response.body or "{}")
            if action in ("TransactWriteItems", "TransactGetItems"):
                return [(kind, table_arn(item[op]["TableName"]))
                        for item in body.get("TransactItems", []) for op, kind in transact.items() if op in item]
            if action == "BatchExecuteStatement":
                return [statement_check(st["Statement"]) for st in body.get("Statements", [])]
            if action == "ExecuteStatement":
                return [statement_check(body.get("Statement", ""))]
            if action in ("BatchGetItem", "BatchWriteItem"):
                return [(action, table_arn(t)) for t in body.get("RequestItems", {})]
            if "TableName" in body:
                return [(action, table_arn(body["TableName"]))]
            return [(action, resource)]
        if module.startswith("moto.sqs."):
            return [(sqs_single.get(action, action), resource)]
        if module.startswith("moto.secretsmanager."):
            body = response.body if isinstance(response.body, dict) else json.loads(response.body or "{}")
            secret = body.get("SecretId", "*")
            if not secret.startswith("arn:"):
                secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}"
            return [(action, secret)]
        return [(action, resource)]

    original_normal = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    def authorize_normal(self, resource="*"):
        from moto.iam.access_control import IAMRequest
        if authorization.ActionAuthenticatorMixin.request_count < authorization.settings.INITIAL_NO_AUTH_ACTION_COUNT:
            return original_normal(self, resource)
        for action, res in checks(self, resource):
            self._authenticate_and_authorize_action(with_action(IAMRequest, action), res)

    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize_normal

    import logging
    import socket
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # One request at a time: moto's backends are not thread-safe (a transaction deep-copies a
    # table another thread is writing). The driver therefore never long-polls.
    from moto.moto_server import threaded_moto_server
    make_server, lock = threaded_moto_server.make_server, threading.Lock()

    def serialized(host, port, app, *args, **kw):
        def locked(environ, start_response):
            with lock:
                return list(app(environ, start_response))
        return make_server(host, port, locked, *args, **kw)

    threaded_moto_server.make_server = serialized
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the run

def client(service, endpoint, keys):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=keys[0],
                        aws_secret_access_key=keys[1])


def user_with_policies(iam, name, docs):
    iam.create_user(UserName=name)
    for n, d in enumerate(docs):
        iam.put_user_policy(UserName=name, PolicyName=f"template-{n}", PolicyDocument=json.dumps(d))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return (k["AccessKeyId"], k["SecretAccessKey"]), f"arn:aws:iam::{ACCOUNT}:user/{name}"


def lines(tag, n, device="device"):
    return "".join(json.dumps({"id": f"{tag}-{i}", "type": "Played", "device": f"{device}-{i % 7}",
                               "ts": 1_790_000_000_000 + i}) + "\n" for i in range(n)).encode()


def notification(bucket, key, size, version=None):
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventName": "ObjectCreated:Put",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "s3-import",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": dict({"key": urllib.parse.quote_plus(key, safe="/"), "size": size},
                              **({"versionId": version} if version else {}))}}]})


class Run:
    def __init__(self, args, endpoint, audit):
        self.args, self.endpoint, self.audit = args, endpoint, audit
        self.name = f"grants-{int(time.time())}"
        self.tmp = tempfile.mkdtemp(prefix="s3i-grants-")
        self.root = client("iam", endpoint, ("root", "root"))

    def provision(self):
        """Everything the stack would create, and the function's principals; IAM is not enforced
        yet (moto counts these calls as the unauthenticated ones)."""
        n, e = self.name, self.endpoint
        anon = ("setup", "setup")
        self.admin, admin_arn = user_with_policies(self.root, f"{n}-admin", [
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}])
        s3, ddb, sqs, sm = (client(s, e, anon) for s in ("s3", "dynamodb", "sqs", "secretsmanager"))
        self.source, self.source2, self.config = f"{n}-source", f"{n}-source-other-account", f"{n}-config"
        for b in (self.source, self.source2, self.config):
            s3.create_bucket(Bucket=b)
        # Versioned: notices carry a versionId, read with GetObjectVersion.
        s3.put_bucket_versioning(Bucket=self.source, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=self.config, Key="s3-import/converter.json", Body=json.dumps(CONVERTER).encode())
        self.tables = {}
        for t in ("claims", "dedupe"):
            ddb.create_table(TableName=f"{n}-{t}", BillingMode="PAY_PER_REQUEST",
                             AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
            self.tables[t] = f"{n}-{t}"
        ddb.update_time_to_live(TableName=f"{n}-dedupe",
                                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
        dlq = sqs.create_queue(QueueName=f"{n}-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{n}-dlq", "maxReceiveCount": "5"}
        self.queue_url = sqs.create_queue(QueueName=f"{n}-queue", Attributes={
            "VisibilityTimeout": "30", "RedrivePolicy": json.dumps(redrive)})["QueueUrl"]
        self.queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{n}-queue"
        self.secret_arn = sm.create_secret(Name=f"{n}/api-key", SecretString=json.dumps({"api_key": API_KEY}))["ARN"]
        resources = {
            "ClaimsTable": {"Ref": self.tables["claims"],
                            "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.tables['claims']}"},
            "DedupeTable": {"Ref": self.tables["dedupe"],
                            "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.tables['dedupe']}"},
            "ImportQueue": {"Ref": self.queue_url, "Arn": self.queue_arn},
            "DeadLetterQueue": {"Ref": dlq, "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{n}-dlq"},
        }
        common = {"SourcePrefix": PREFIX, "ConverterBucket": self.config, "ReportsBucket": self.config,
                  "ApiKeySecretArn": self.secret_arn}
        self.role_arn = f"arn:aws:iam::{ACCOUNT}:role/{n}-source-role"
        same = Template(f"{ROOT}/template.yaml", dict(common, SourceBucketName=self.source), resources)
        cross = Template(f"{ROOT}/template.yaml", dict(common, SourceBucketName=self.source2,
                                                        SourceRoleArn=self.role_arn,
                                                        SourceExternalId=EXTERNAL_ID), resources)
        self.granted = actions_of(same.function_policies() + cross.function_policies())
        self.grants = grants_of(same.function_policies() + cross.function_policies())
        drop = set(self.args.drop)
        unknown = drop - set(self.granted)
        if unknown:
            sys.exit(f"--drop {sorted(unknown)}: the template does not grant that")
        self.same_keys, same_arn = user_with_policies(
            self.root, f"{n}-function", drop_actions(same.function_policies(), drop))
        self.cross_keys, cross_arn = user_with_policies(
            self.root, f"{n}-function-x", drop_actions(cross.function_policies(), drop))
        self.same_env, self.cross_env = same.function_environment(), cross.function_environment()
        # The bucket owner's role (infra/aws/): trusts the function's principal with the external ID.
        trust = open(f"{ROOT}/infra/aws/source-role-trust-policy.json").read()
        trust = trust.replace("arn:aws:iam::IMPORTER_ACCOUNT_ID:role/IMPORTER_FUNCTION_ROLE_NAME", cross_arn)
        trust = trust.replace("YOUR_EXTERNAL_ID", EXTERNAL_ID)
        perms = open(f"{ROOT}/infra/aws/source-role-permissions.json").read()
        perms = perms.replace("SOURCE_BUCKET", self.source2).replace("SOURCE_PREFIX", PREFIX)
        self.root.create_role(RoleName=f"{n}-source-role", AssumeRolePolicyDocument=trust)
        self.root.put_role_policy(RoleName=f"{n}-source-role", PolicyName="read-source", PolicyDocument=perms)
        self.audit.watched = (same_arn, cross_arn, f"assumed-role/{n}-source-role/")
        # The function's role as `s3-import check --role-arn` assumes it (the deployer trusted
        # through CheckPrincipalArn), with the same policy.
        self.root.create_role(RoleName=f"{n}-function-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}]}))
        for i, d in enumerate(drop_actions(same.function_policies(), drop)):
            self.root.put_role_policy(RoleName=f"{n}-function-role", PolicyName=f"template-{i}",
                                      PolicyDocument=json.dumps(d))
        self.check_role = f"arn:aws:iam::{ACCOUNT}:role/{n}-function-role"

    def enforce(self):
        """From now on every request is authenticated and authorized (moto's
        INITIAL_NO_AUTH_ACTION_COUNT, set to 0 through its reset-auth API)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req).read()
        e = self.endpoint
        self.s3, self.sqs, self.ddb = (client(s, e, self.admin) for s in ("s3", "sqs", "dynamodb"))

    def function(self, env_base, keys):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3I_", "AMPLITUDE_"))}
        env.update(env_base)
        env.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": keys[0],
                    "AWS_SECRET_ACCESS_KEY": keys[1], "AWS_REGION": REGION, "S3I_ENDPOINT": self.api,
                    # pacing for the test: batches of 10, one in flight (the endpoint takes 400 ms
                    # each), a short stop margin, so a 5 s deadline pauses a 150-event import
                    "S3I_BATCH_EVENTS": "10", "S3I_MAX_IN_FLIGHT": "1", "S3I_STOP_MARGIN_SECS": "1",
                    "S3I_LEASE_MARGIN_SECS": "2", "S3I_LOG": os.environ.get("S3I_LOG", "s3_import=info")})
        log = open(os.path.join(self.tmp, "function.log"), "ab")
        return Function(self.args.lambda_bin, env, log).start()

    def put(self, bucket, key, body, notify=True):
        version = self.s3.put_object(Bucket=bucket, Key=key, Body=body).get("VersionId")
        if notify:
            self.sqs.send_message(QueueUrl=self.queue_url,
                                  MessageBody=notification(bucket, key, len(body), version))

    def drain(self, fn, want_done, timeout_s=60, deadline_s=60):
        """Plays the SQS trigger until the queue is empty and `want_done()` holds."""
        end = time.time() + timeout_s
        while time.time() < end:
            records = sqs_records(self.sqs, self.queue_url, self.queue_arn, wait_s=0)
            if records:
                answer = fn.invoke({"Records": records}, deadline_s)
                failed = settle(self.sqs, self.queue_url, records, answer)
                if answer[0] != "response":
                    print(f"  invocation error: {answer[1]}")
                elif failed:
                    print(f"  {len(failed)} messages to retry")
                continue
            if want_done():
                return
            time.sleep(0.3)
        raise AssertionError("the queue did not drain / the imports did not finish in time")

    def received(self):
        """The distinct insert_ids the endpoint accepted."""
        try:
            with open(os.path.join(self.tmp, "received", "events.jsonl")) as f:
                return {json.loads(line)["insert_id"] for line in f}
        except FileNotFoundError:
            return set()

    def events(self):
        return len(self.received())

    def reports(self):
        out = self.s3.list_objects_v2(Bucket=self.config, Prefix="s3-import-reports/")
        return [o["Key"] for o in out.get("Contents", [])]

    def claims(self):
        items = self.ddb.scan(TableName=self.tables["claims"])["Items"]
        # The scans' marks (pk ["scan-mark", ...]) live beside the claims.
        return {i["pk"]["S"]: i.get("claim_state", {}).get("S") for i in items
                if not i["pk"]["S"].startswith('["scan-mark"')}

    def scan_marks(self):
        items = self.ddb.scan(TableName=self.tables["claims"])["Items"]
        return [i for i in items if i["pk"]["S"].startswith('["scan-mark"')]

    def run(self):
        received = os.path.join(self.tmp, "received")
        emu = subprocess.Popen([self.args.cli, "emulator", "--listen", "127.0.0.1:0", "--data-dir", received,
                                "--api-key", API_KEY, "--latency-ms", "400"], stdout=subprocess.PIPE, text=True)
        self.api = emu.stdout.readline().strip().removeprefix("listening on ")
        threading.Thread(target=emu.stdout.read, daemon=True).start()  # a full pipe would stall it
        fns = []
        try:
            self.paths(fns)
        finally:
            for f in fns:
                f.stop()
            emu.terminate()
            emu.wait()

    def step(self, text):
        print(f"grants: {text}", flush=True)

    def paths(self, fns):
        # 1. A notification batch: the API key read from the secret at start, the converter
        #    read, two objects imported, a report per object and the rejects of a bad record.
        self.step("notification batch (same-account source, API key from Secrets Manager)")
        fn = self.function(self.same_env, self.same_keys)
        fns.append(fn)
        # An expired dedupe mark of one of a's events (TTL deletes lazily): replaced (PutItem).
        source_id = self.same_env["S3I_SOURCE"]
        self.ddb.put_item(TableName=self.tables["dedupe"], Item={
            "pk": {"S": json.dumps([source_id, "device-3", "a-3"], separators=(",", ":"))},
            "obj": {"S": "elsewhere/old.jsonl"}, "n": {"N": "3"},
            "expires_at": {"N": str(int(time.time()) - 60)}})
        self.put(self.source, f"{PREFIX}a.jsonl.gz", gzip.compress(lines("a", 10)))
        # An event the endpoint rejects (empty event_type): its dedupe mark is released
        # (DeleteItem).
        rejected = json.dumps({"id": "b-rejected", "type": "", "device": "device-1",
                               "ts": 1_790_000_000_000}).encode() + b"\n"
        self.put(self.source, f"{PREFIX}b c.jsonl", lines("b", 10) + b"not json\n" + rejected)
        self.drain(fn, lambda: self.events() >= 20)
        self.expect_events(20)
        marks = {i["pk"]["S"]: i["obj"]["S"] for i in self.ddb.scan(TableName=self.tables["dedupe"])["Items"]}
        assert not any("b-rejected" in m for m in marks), "the rejected event's mark stayed"
        a3 = [o for m, o in marks.items() if '"a-3"' in m]
        assert a3 and "/a.jsonl.gz" in a3[0], f"the expired mark was not replaced: {a3}"
        keys = self.reports()
        assert any(k.endswith("a.jsonl.gz.report.json") for k in keys), keys
        assert any(".rejects." in k for k in keys), f"no rejects written: {keys}"

        # 2. A continuation: a 5 s deadline pauses a 150-event import (batches of 10 at 400 ms);
        #    the checkpoint is saved on the claim and a continuation message queued, which the
        #    next invocation continues to the end.
        self.step("continuation (import paused by its deadline, continued from the queue)")
        self.put(self.source, f"{PREFIX}big.jsonl", lines("big", 150))
        records = sqs_records(self.sqs, self.queue_url, self.queue_arn, wait_s=0)
        answer = fn.invoke({"Records": records}, 5)
        settle(self.sqs, self.queue_url, records, answer)
        # Acknowledged with part sent: only the continuation message can finish it.
        assert answer == ("response", {"batchItemFailures": []}), answer
        assert 20 < self.events() < 170, f"not paused midway: {self.events() - 20} of 150 sent"
        self.drain(fn, lambda: self.events() >= 170)
        self.expect_events(170)

        # 3. The scheduled scan (infra/events/scheduled-scan.json): two objects whose notices were
        #    lost are found, queued, and imported from the queue, one's duplicates dropped.
        self.step("scheduled scan that queues what it finds")
        self.put(self.source, f"{PREFIX}lost-1.jsonl", lines("lost1", 5), notify=False)
        # lost-2 repeats lost-1's events: one copy is a duplicate, whose holder is read back
        # (the dedupe table's BatchGetItem).
        self.put(self.source, f"{PREFIX}lost-2.jsonl", lines("lost2", 5) + lines("lost1", 5), notify=False)
        # A stale QUEUED mark on a key the import ignores (a hidden file, `_SUCCESS`): the scan
        # takes it off (the claims table's DeleteItem).
        stale = f"{PREFIX}_SUCCESS"
        self.put(self.source, stale, b"-", notify=False)
        stale_pk = json.dumps([self.same_env["S3I_SOURCE"], self.source, stale], separators=(",", ":"))
        self.ddb.put_item(TableName=self.tables["claims"], Item={
            "pk": {"S": stale_pk}, "claim_state": {"S": "QUEUED"},
            "queued_until": {"N": str(int(time.time()) + 86_400)}, "checkpoint": {"N": "0"},
            "progress": {"S": ""}, "source": {"S": self.same_env["S3I_SOURCE"]},
            "bucket": {"S": self.source}, "object_key": {"S": stale}})
        scan = json.load(open(f"{ROOT}/infra/events/scheduled-scan.json"))
        scan["s3import-scan"].update(bucket=self.source, prefix=PREFIX)
        kind, value = fn.invoke(scan, 60)
        assert kind == "response", value
        self.drain(fn, lambda: self.events() >= 180)
        self.expect_events(180)
        gone = self.ddb.get_item(TableName=self.tables["claims"], Key={"pk": {"S": stale_pk}})
        assert "Item" not in gone, f"the stale mark of {stale} was not cleared: {gone}"

        # 4. An invocation killed mid-import (kill -9): its notice comes back while the dead
        #    invocation's lease lasts and is handed back until the lease ends (the visibility
        #    changed), then a new process takes the object over and completes it.
        self.step("an invocation killed mid-import; the notice handed back, then taken over")
        self.put(self.source, f"{PREFIX}killed.jsonl", lines("killed", 150))
        records = sqs_records(self.sqs, self.queue_url, self.queue_arn, wait_s=0)
        fn.api.submit({"Records": records}, 10)
        end = time.time() + 20
        while self.events() < 200 and time.time() < end:
            time.sleep(0.1)
        fn.kill9()
        assert self.events() < 330, "the import finished before the kill"
        fn = self.function(self.same_env, self.same_keys)
        fns.append(fn)
        # Lambda makes a message visible again when its invocation ends; here at once.
        self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=records[0]["receiptHandle"],
                                           VisibilityTimeout=0)
        records = sqs_records(self.sqs, self.queue_url, self.queue_arn, wait_s=0)
        answer = fn.invoke({"Records": records}, 30)
        assert answer == ("response", {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}), answer
        settle(self.sqs, self.queue_url, records, answer)
        self.drain(fn, lambda: self.events() >= 330)
        self.expect_events(330)

        # 5. A source in another account: read through the assumed role (external ID), by a
        #    function whose own policy has no grant on that bucket; a notice and a scan.
        self.step("source read through the assumed cross-account role")
        fn.stop()
        fn = self.function(self.cross_env, self.cross_keys)
        fns.append(fn)
        self.put(self.source2, f"{PREFIX}x.jsonl", lines("x", 10))
        self.put(self.source2, f"{PREFIX}x-lost.jsonl", lines("xlost", 10), notify=False)
        self.drain(fn, lambda: self.events() >= 340)
        scan["s3import-scan"].update(bucket=self.source2)
        kind, value = fn.invoke(scan, 60)
        assert kind == "response", value
        self.drain(fn, lambda: self.events() >= 350)
        self.expect_events(350)
        states = self.claims()
        assert len(states) == 8 and set(states.values()) == {"COMPLETED"}, states
        # Each complete scan left its mark (UpdateItem), read back by the next scan (BatchGetItem).
        marks = self.scan_marks()
        assert len(marks) == 2, marks

        # 6. `s3-import check --role-arn`, run with the deployer's credentials, sees what the
        #    function may do: with the template's policy every check passes.
        self.step("s3-import check --role-arn (the function's role)")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3I_", "AMPLITUDE_"))}
        env.update(self.same_env, AWS_ENDPOINT_URL=self.endpoint, AWS_ACCESS_KEY_ID=self.admin[0],
                   AWS_SECRET_ACCESS_KEY=self.admin[1], AWS_REGION=REGION, S3I_ENDPOINT=self.api)
        out = subprocess.run([self.args.cli, "check", "--role-arn", self.check_role], env=env,
                             capture_output=True, text=True)
        problems = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
        assert out.returncode == 0 and not problems, "check as the function's role:\n" + (
            "\n".join(problems) or out.stdout + out.stderr)
        assert f"assumed-role/{self.name}-function-role/" in out.stdout, out.stdout
        for action in ("PartiQLInsert", "DeleteItem", "BatchGetItem", "PutItem"):
            assert f"dynamodb:{action} on {self.tables['dedupe']} is allowed" in out.stdout, out.stdout

    def expect_events(self, n):
        got = self.events()
        assert got == n, f"the endpoint received {got} events, expected {n}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cli", help="the s3-import binary (its emulator is the endpoint)")
    p.add_argument("lambda_bin", help="the Lambda binary (s3-import-lambda or a bootstrap)")
    p.add_argument("--drop", action="append", default=[], help="take this action out of the rendered policy")
    args = p.parse_args()
    started = time.time()
    audit = Audit()
    server, endpoint = start_moto(audit)
    run = Run(args, endpoint, audit)
    failure = None
    try:
        run.provision()
        run.enforce()
        run.run()
    except (AssertionError, InvocationLost) as e:
        failure = str(e) or repr(e)
    finally:
        server.stop()
    denied = sorted({(a, r) for _, a, r in audit.denied})
    for action, resource in denied:
        why = " (or the role's trust policy refused it)" if action == "sts:AssumeRole" else ""
        print(f"DENIED {action} on {resource}: the function needs it and template.yaml does not grant it{why}")
    def used(action, pattern):
        rx = re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")
        return any(a == action and rx.match(r) for a, r in audit.allowed)
    unused = [f"{a} on {r}" for a, r in run.grants if a != "kms:Decrypt" and not used(a, r)]
    if failure or denied:
        if failure:
            print(f"grants: FAILED: {failure} (function log: {run.tmp}/function.log)")
        sys.exit(1)
    print(f"grants: every path ran with exactly the template's policy ({time.time() - started:.0f} s); "
          f"actions used: {', '.join(sorted({a for a, _ in audit.allowed}))}")
    if unused:
        print(f"grants: granted but not used in these paths: {'; '.join(unused)}")


if __name__ == "__main__":
    main()
