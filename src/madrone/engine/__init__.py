"""The engine: JobSpec -> Plan -> tiles -> products."""
