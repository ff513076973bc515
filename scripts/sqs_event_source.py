"""A local stand-in for Lambda's SQS event source mapping.

Long-polls the queue, gathers a batch (up to --batch-size messages, or what arrived within
--batching-window seconds of the first), invokes the function through `cargo lambda watch`
with a real SQS event, and deletes the messages the function did not report in its partial
batch response. Failures are left alone: they come back after the visibility timeout, and after
the queue's maxReceiveCount they move to the dead-letter queue, as on AWS.
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

import boto3


def record(message: dict, queue_arn: str, region: str) -> dict:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def gather(sqs, queue_url: str, batch_size: int, window: float, visibility: int) -> list:
    batch: list = []
    first_at = None
    while len(batch) < batch_size:
        if first_at is None:
            wait = 10  # long poll while idle
        else:
            left = window - (time.monotonic() - first_at)
            if left <= 0:
                break
            wait = min(int(left), 20)
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, batch_size - len(batch)),
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if messages and first_at is None:
            first_at = time.monotonic()
        batch.extend(messages)
        if not messages and first_at is not None:
            time.sleep(min(0.05, max(0.0, window - (time.monotonic() - first_at))))
    return batch


def invoke(url: str, event: dict, timeout: float):
    request = urllib.request.Request(
        url, data=json.dumps(event).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        print(f"sqs-event-source: invoke failed: {exc}", file=sys.stderr, flush=True)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue-url", default=os.environ.get("QUOTES_QUEUE_URL"))
    parser.add_argument("--function", default="score")
    parser.add_argument("--invoke-url", default="http://127.0.0.1:9000")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--batching-window", type=float, default=0.5, help="seconds")
    parser.add_argument("--visibility-timeout", type=int, default=30, help="seconds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=args.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = f"{args.invoke_url}/2015-03-31/functions/{args.function}/invocations"
    print(f"sqs-event-source: {args.queue_url} -> {args.function} "
          f"(batch {args.batch_size}, window {args.batching_window}s)", flush=True)
    while True:
        batch = gather(sqs, args.queue_url, args.batch_size, args.batching_window,
                       args.visibility_timeout)
        if not batch:
            continue
        event = {"Records": [record(m, queue_arn, sqs.meta.region_name) for m in batch]}
        answer = invoke(url, event, timeout=args.visibility_timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("batchItemFailures"), list):
            print(f"sqs-event-source: {len(batch)} messages not deleted: the invocation failed: "
                  f"{answer!r:.300}", flush=True)
            continue
        failed = {f.get("itemIdentifier") for f in answer["batchItemFailures"]}
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=args.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start:start + 10])])
        print(f"sqs-event-source: {len(batch)} messages, {len(failed)} failed", flush=True)


if __name__ == "__main__":
    main()
