"""The aiohttp web layer: status page, JSON API, /metrics, health. It reads, never polls."""
