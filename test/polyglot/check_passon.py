"""Pass-on check: sign on at a local, invoke an app served there and one passed on, and
read the rich error of an app no node serves. Usage: switchyard_check.py STUBS passon LOCAL_ADDRESS"""
import grpc

import switchyard_check
from switchyard.passon.v1 import app_gateway_service_pb2 as gw, app_gateway_service_pb2_grpc as gw_grpc


def run(args):
    (address,) = args
    stub = gw_grpc.AppGatewayServiceStub(switchyard_check.channel(address))
    token = stub.SignOn(gw.SignOnRequest(user="alice", password="alice-pw"), timeout=10).token

    def invoke(app, body):
        res = stub.Invoke(gw.InvokeRequest(app=app, token=token, request=body), timeout=10)
        return {"response": res.response.decode(), "servedBy": res.served_by, "hops": [h.node_id for h in res.hops]}

    try:
        stub.Invoke(gw.InvokeRequest(app="no-such-app", token=token, request=b""), timeout=10)
        missing = {"code": "OK"}
    except grpc.RpcError as err:
        missing = switchyard_check.rich_error(err)
    return {"local": invoke("echo", b"hi"), "passedOn": invoke("upper", b"hi"), "missing": missing}
