"""The local inference gateway: a real Envoy in front of N model-server replicas.

Labelled for what it is: the local stand-in for the GAIE gateway and llm-d's endpoint picker, the
way :mod:`services.runtime.sim` stands in for vLLM. :mod:`.envoy` generates Envoy's bootstrap and
runs the binary; :mod:`.picker` is the ext_proc endpoint picker; :mod:`.scoring` its scorers;
:mod:`.stack` starts replicas, picker and Envoy together (``kubescribe up --llm-replicas N`` and
the GAIE experiment use the same one).
"""

from services.runtime.gateway.envoy import POLICIES, EnvoyGateway, GatewayError, bootstrap, envoy_binary
from services.runtime.gateway.picker import DESTINATION_HEADER, PickerServer
from services.runtime.gateway.scoring import EndpointState, Picker, PrefixIndex, Weights
from services.runtime.gateway.stack import GatewayStack, gateway_specs

__all__ = [
    "DESTINATION_HEADER",
    "POLICIES",
    "EndpointState",
    "EnvoyGateway",
    "GatewayError",
    "GatewayStack",
    "Picker",
    "PickerServer",
    "PrefixIndex",
    "Weights",
    "bootstrap",
    "envoy_binary",
    "gateway_specs",
]
