"""Pure core: bytes in, values or exceptions out. No files, sockets or asyncio."""
