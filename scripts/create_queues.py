"""Creates the quotes queue and its dead-letter queue on the SQS emulator, and the event bus of
batch events with a rule that copies every `QuoteBatchCompleted` to a queue of its own, where
they can be read (idempotent; moto serves EventBridge too).

Prints the three queue URLs on one line: the queue's, the dead-letter queue's, the events'.
"""

import argparse
import json
import os

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="quotes")
    parser.add_argument("--max-receives", type=int, default=5,
                        help="receives before a message moves to the dead-letter queue")
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument("--event-bus", default="quotes", help="the event bus of batch events")
    args = parser.parse_args()

    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
    dlq_url = sqs.create_queue(
        QueueName=f"{args.name}-dlq",
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(args.visibility_timeout),
        "MessageRetentionPeriod": str(4 * 24 * 3600),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(args.max_receives)}),
    }
    queue_url = sqs.create_queue(QueueName=args.name)["QueueUrl"]
    # create_queue keeps an existing queue's attributes; set them so a rerun applies changes.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    print(queue_url, dlq_url, event_queue(sqs, args.event_bus))


def event_queue(sqs, bus: str) -> str:
    """The bus, and a queue that a rule sends each of its `QuoteBatchCompleted` events to."""
    events = boto3.client("events", endpoint_url=os.environ["AWS_ENDPOINT_URL_EVENTBRIDGE"])
    try:
        events.create_event_bus(Name=bus)
    except events.exceptions.ResourceAlreadyExistsException:
        pass
    url = sqs.create_queue(QueueName=f"{bus}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    rule = f"{bus}-batch-completed"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(
        {"source": ["quote-pipeline"], "detail-type": ["QuoteBatchCompleted"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return url


if __name__ == "__main__":
    main()
