"""The backbone as data: sites, links, delays, loaders, and the Mininet edge."""
