"""values.schema.json of the otelpipe chart: the chart's own values, with `config`
(the pipeline config) checked against `otelpipe schema`, so `helm lint`, `helm template`
and `helm install` refuse an unknown key or a wrong type in the pipeline config.

    python3 -m pipeline schema | python3 deploy/helm/values-schema.py \
        > deploy/helm/otelpipe/values.schema.json      (scripts/helm.sh schema)
"""

import json
import sys

otelpipe = json.load(sys.stdin)
defs = otelpipe.pop("$defs", {})
otelpipe.pop("$schema", None)
defs["OtelpipeConfig"] = otelpipe

obj = {"type": "object"}
string = {"type": "string"}
integer = {"type": "integer", "minimum": 0}
env_list = {"type": "array", "items": {"type": "object", "required": ["name"]}}
probe = {"type": "object"}

schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "otelpipe chart values",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mode": {"enum": ["sidecar", "deployment", "statefulset"]},
        "image": {"type": "object", "additionalProperties": False, "required": ["repository"],
                  "properties": {"repository": string, "tag": string,
                                 "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}},
        "config": {
            "description": "the pipeline config (otelpipe YAML); empty: the mode's default",
            "anyOf": [{"type": "object", "maxProperties": 0},
                      {"$ref": "#/$defs/OtelpipeConfig"}]},
        "extraEnv": env_list,
        "replicaCount": integer,
        "sidecar": {"type": "object", "additionalProperties": False,
                    "properties": {"gatewayEndpoint": string,
                                   "app": {"type": "array", "minItems": 1,
                                           "items": {"type": "object",
                                                     "required": ["name", "image"]}}}},
        "gateway": {"type": "object", "additionalProperties": False,
                    "properties": {"backendEndpoint": string}},
        "service": {"type": "object", "additionalProperties": False,
                    "properties": {"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                   "ports": {"type": "object",
                                             "additionalProperties": {"type": "integer"}}}},
        "resources": obj,
        "livenessProbe": probe,
        "readinessProbe": probe,
        "podSecurityContext": obj,
        "securityContext": obj,
        "terminationGracePeriodSeconds": integer,
        "autoscaling": {"type": "object", "additionalProperties": False,
                        "properties": {"enabled": {"type": "boolean"},
                                       "minReplicas": {"type": "integer", "minimum": 1},
                                       "maxReplicas": {"type": "integer", "minimum": 1},
                                       "targetCPUUtilizationPercentage": {
                                           "type": "integer", "minimum": 1, "maximum": 100}}},
        "podDisruptionBudget": {"type": "object", "additionalProperties": False,
                                "properties": {"enabled": {"type": "boolean"},
                                               "minAvailable": {"type": ["integer", "string"]}}},
        "persistence": {"type": "object", "additionalProperties": False,
                        "properties": {"size": string, "storageClassName": string,
                                       "accessModes": {"type": "array", "items": string}}},
        "serviceMonitor": {"type": "object", "additionalProperties": False,
                           "properties": {"enabled": {"type": "boolean"}, "interval": string,
                                          "labels": obj}},
        "podLabels": obj,
        "podAnnotations": obj,
        "nodeSelector": obj,
        "tolerations": {"type": "array"},
        "affinity": obj,
    },
    "$defs": defs,
}
json.dump(schema, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")
