#!/usr/bin/python3
"""kafka-roundtrip BOOTSTRAP [TOPIC]: produce one message and consume it back (cdq kit tool).

Uses Debian's python3-kafka (kafka-python), a real Kafka client: it bootstraps from BOOTSTRAP,
follows the broker address the cluster advertises in its metadata, produces a unique message
(creating the topic first), and consumes the topic from the beginning until that message comes back. Prints the
advertised brokers and exits 0 on success, 1 otherwise.
"""
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: kafka-roundtrip BOOTSTRAP [TOPIC]")
    bootstrap = sys.argv[1]
    topic = sys.argv[2] if len(sys.argv) > 2 else "cdq-kit-roundtrip"
    payload = f"cdq-kit-{uuid.uuid4().hex}".encode()
    # kafka-python 2.0 asks for metadata with v1, which has no allow_auto_topic_creation
    # flag, so create the topic explicitly (CreateTopics) instead of relying on auto-create
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        print(f"created topic {topic}", flush=True)
    except TopicAlreadyExistsError:
        pass
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15000, max_block_ms=20000)
    meta = producer.send(topic, payload).get(timeout=20)
    producer.flush()
    brokers = [f"{b.host}:{b.port}" for b in producer._metadata.brokers()]
    print(f"advertised brokers: {','.join(sorted(brokers))}", flush=True)
    print(f"produced to {meta.topic}[{meta.partition}]@{meta.offset}", flush=True)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20000)
    for msg in consumer:
        if msg.value == payload:
            print(f"consumed {msg.topic}[{msg.partition}]@{msg.offset}: {payload.decode()}", flush=True)
            consumer.close()
            return 0
    print("error: the produced message was not consumed back within 20 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
