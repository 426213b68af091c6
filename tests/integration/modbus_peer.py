#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A real Modbus/TCP server and client (pymodbus) on a loopback port: the
client runs a fixed sequence of requests and exits. Prints one line per
request, so the test knows exactly what was on the wire."""
import logging
import sys
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.mei_message import ReadDeviceInformationRequest
from pymodbus.server import StartTcpServer

logging.disable(logging.CRITICAL)
port = int(sys.argv[1])
store = ModbusSlaveContext(di=ModbusSequentialDataBlock(0, [1] * 100), co=ModbusSequentialDataBlock(0, [0] * 100),
                           hr=ModbusSequentialDataBlock(0, [7] * 100), ir=ModbusSequentialDataBlock(0, [3] * 100))
ident = ModbusDeviceIdentification(info_name={"VendorName": "LabVendor", "ProductCode": "LV-1",
                                              "MajorMinorRevision": "1.2"})
threading.Thread(target=StartTcpServer, daemon=True,
                 kwargs=dict(context=ModbusServerContext(slaves=store, single=True), identity=ident,
                             address=("127.0.0.1", port))).start()
time.sleep(0.5)
c = ModbusTcpClient("127.0.0.1", port=port)
assert c.connect()
print("fc3", c.read_holding_registers(0, 10, slave=1).registers, flush=True)
print("fc6", c.write_register(3, 42, slave=1).value, flush=True)
print("fc1", c.read_coils(0, 8, slave=1).bits, flush=True)
print("fc16", c.write_registers(10, [1, 2, 3], slave=1).count, flush=True)
print("fc4", c.read_input_registers(0, 5, slave=1).registers, flush=True)
print("fc43", c.execute(ReadDeviceInformationRequest(unit=1)).information, flush=True)
print("exc", c.read_holding_registers(99, 10, slave=1), flush=True)  # past the map: exception
c.close()
time.sleep(0.3)
