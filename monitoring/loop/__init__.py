"""The closed loop's pure part: the policy as code and the decisions it implies, no Kafka, MLflow or clock."""
