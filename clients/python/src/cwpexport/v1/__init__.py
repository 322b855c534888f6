"""``cwpexport.v1``: ``license_export_pb2`` (messages) and
``license_export_pb2_grpc`` (``LicenseExportServiceStub``), generated from
proto/cwpexport/v1/license_export.proto by clients/generate.sh."""
