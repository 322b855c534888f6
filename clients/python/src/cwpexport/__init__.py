"""Generated protobuf and gRPC modules of the CWP license export gateway's API
(proto package ``cwpexport.v1``); see :mod:`cwpexport_client` for the helper."""
