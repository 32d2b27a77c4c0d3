"""Checks that the local AWS stack does what the importer needs: S3 → SQS notifications, DynamoDB
conditional writes (claims), TransactWriteItems with cancellation reasons (dedupe) and TTL.
Run with the LocalStack venv's python, the stack up: infra/localstack/stack.sh up."""
import json
import sys
import time
import uuid

import boto3
from botocore.exceptions import ClientError

endpoint = "http://127.0.0.1:4566"
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3, sqs, ddb = boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("dynamodb", **kw)
run = uuid.uuid4().hex[:8]
failures = []


def check(name, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}")
    if not ok:
        failures.append(name)


# S3 → SQS: a key with a space, a plus and unicode arrives encoded; the importer decodes it.
bucket, queue = f"smoke-{run}", f"smoke-{run}"
s3.create_bucket(Bucket=bucket)
q = sqs.create_queue(QueueName=queue)["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(
    Bucket=bucket,
    NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]},
)
key = "in/my file+1 é.json"
s3.put_object(Bucket=bucket, Key=key, Body=b'{"a":1}\n')
s3.put_object(Bucket=bucket, Key="reports/not-watched.json", Body=b"{}")
records, deadline = [], time.time() + 10
while time.time() < deadline and not records:
    for m in sqs.receive_message(QueueUrl=q, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", []):
        body = json.loads(m["Body"])
        records += [r for r in body.get("Records", []) if r.get("eventName", "").startswith("ObjectCreated")]
check("S3 notification reaches SQS", len(records) == 1, str(records))
if records:
    raw = records[0]["s3"]["object"]["key"]
    check("notification key is encoded, as in AWS", raw != key, raw)
    print(f"       raw key in the notification: {raw}")

# Claims: a conditional put wins once; an expired lease can be taken over.
table = f"claims-{run}"
ddb.create_table(TableName=table, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"]
check("TTL can be enabled", ttl in ("ENABLED", "ENABLING"), ttl)
cond = "attribute_not_exists(pk) OR (#s = :in_progress AND #lease < :now)"
def claim(owner, now):
    try:
        ddb.put_item(TableName=table, Item={"pk": {"S": "b/k"}, "state": {"S": "IN_PROGRESS"}, "owner": {"S": owner}, "lease": {"N": str(now + 60)}},
                     ConditionExpression=cond, ExpressionAttributeNames={"#s": "state", "#lease": "lease"},
                     ExpressionAttributeValues={":in_progress": {"S": "IN_PROGRESS"}, ":now": {"N": str(now)}})
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
now = int(time.time())
check("first claim wins", claim("a", now))
check("second claim loses", not claim("b", now))
check("expired lease is taken over", claim("c", now + 120))

# Dedupe: a transaction of conditional puts cancels as a whole and says which item failed.
dedupe = f"dedupe-{run}"
ddb.create_table(TableName=dedupe, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
ddb.put_item(TableName=dedupe, Item={"pk": {"S": "dev-1/ins-2"}})
put = lambda pk: {"Put": {"TableName": dedupe, "Item": {"pk": {"S": pk}}, "ConditionExpression": "attribute_not_exists(pk)"}}
try:
    ddb.transact_write_items(TransactItems=[put("dev-1/ins-1"), put("dev-1/ins-2"), put("dev-1/ins-3")])
    check("transaction with a duplicate is cancelled", False)
except ClientError as e:
    codes = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
    check("transaction with a duplicate is cancelled", e.response["Error"]["Code"] == "TransactionCanceledException")
    check("cancellation reasons name the duplicate", codes == ["None", "ConditionalCheckFailed", "None"], str(codes))

print("smoke check: " + ("all passed" if not failures else f"{len(failures)} failed"))
sys.exit(1 if failures else 0)
