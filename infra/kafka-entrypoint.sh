#!/bin/sh
# Slipstream's Kafka in a container: one KRaft node (broker + controller in one JVM), meant for the host network.
# Formats its storage on first start (a single-node dynamic quorum, `format --standalone`), then runs the broker.
# POSIX sh only: it also runs in the official apache/kafka image (Alpine), injected by slipstream.infra.throwaway.
#
# Environment (defaults in brackets):
#   KAFKA_HOST [127.0.0.1]  KAFKA_PORT [9092]  KAFKA_CONTROLLER_PORT [9093]  KAFKA_HEAP [512m]
#   KAFKA_CLUSTER_ID [random]  KAFKA_LIBS [/opt/kafka/libs]  KAFKA_DATA [/tmp/kafka-data]
# Arguments of the form key=value are appended to server.properties (a later key wins), e.g. num.io.threads=1.
set -eu

host=${KAFKA_HOST:-127.0.0.1}
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-9093}
heap=${KAFKA_HEAP:-512m}
libs=${KAFKA_LIBS:-/opt/kafka/libs}
data=${KAFKA_DATA:-/tmp/kafka-data}
props=$data/server.properties

new_cluster_id() {  # 16 random bytes, base64url without padding, not starting with '-' (as Kafka's own)
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    case $id in -*) ;; *) echo "$id"; return ;; esac
  done
}
cluster=${KAFKA_CLUSTER_ID:-$(new_cluster_id)}

mkdir -p "$data/log"
{
  echo "process.roles=broker,controller"
  echo "node.id=1"
  echo "controller.quorum.bootstrap.servers=$host:$cport"
  echo "listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$cport"
  echo "advertised.listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$cport"
  echo "controller.listener.names=CONTROLLER"
  echo "inter.broker.listener.name=PLAINTEXT"
  echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  echo "log.dirs=$data/log"
  echo "offsets.topic.replication.factor=1"
  echo "transaction.state.log.replication.factor=1"
  echo "transaction.state.log.min.isr=1"
  echo "share.coordinator.state.topic.replication.factor=1"
  echo "share.coordinator.state.topic.min.isr=1"
  echo "group.initial.rebalance.delay.ms=0"
  for setting in "$@"; do echo "$setting"; done
} >"$props"

# To the container's stdout (`docker logs`): warnings, the version line and "Kafka Server started".
cat >"$data/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = Out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = Out
logger.version.name = org.apache.kafka.common.utils.AppInfoParser
logger.version.level = INFO
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
EOF

if [ ! -f "$data/log/meta.properties" ]; then
  java -Dlog4j2.configurationFile="$data/log4j2.properties" -cp "$libs/*" kafka.tools.StorageTool \
    format --config "$props" --cluster-id "$cluster" --standalone
fi

# The JVM flags of slipstream.infra.kafka_props.broker_command (kafka-server-start's, with a fixed heap).
exec java "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -Dlog4j2.configurationFile="$data/log4j2.properties" \
  -Dlog4j2.shutdownHookEnabled=false -cp "$libs/*" kafka.Kafka "$props"
