"""Front-ends (Telegram, Discord, local web chat, CLI) over `engine.service.FashionService`."""
