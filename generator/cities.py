"""Home cities of the simulated devices.

Names are in the canonical form the pipeline produces (Unicode title case), so Gold's
`location_city` equals the generator's city whatever casing or whitespace a device sends.
"""

from __future__ import annotations

from typing import NamedTuple


class City(NamedTuple):
    name: str
    country: str
    lat: float
    lon: float
    mean_temperature_c: float


CITIES: tuple[City, ...] = (
    City("Berlin", "DE", 52.52, 13.405, 9.0),
    City("Zürich", "CH", 47.3769, 8.5417, 8.5),
    City("Kraków", "PL", 50.0647, 19.945, 8.0),
    City("São Paulo", "BR", -23.5505, -46.6333, 19.5),
    City("Düsseldorf", "DE", 51.2277, 6.7735, 10.5),
    City("Malmö", "SE", 55.605, 13.0038, 8.0),
    City("Reykjavík", "IS", 64.1466, -21.9426, 4.5),
    City("Bogotá", "CO", 4.711, -74.0721, 14.0),
    City("Montréal", "CA", 45.5019, -73.5674, 6.5),
    City("Córdoba", "AR", -31.4201, -64.1888, 18.0),
    City("Tromsø", "NO", 69.6492, 18.9553, 3.0),
    City("Jönköping", "SE", 57.7826, 14.1618, 6.5),
    City("Brașov", "RO", 45.6427, 25.5887, 8.0),
    City("Łódź", "PL", 51.7592, 19.456, 8.0),
    City("Ciudad Juárez", "MX", 31.6904, -106.4245, 18.0),
    City("London", "GB", 51.5072, -0.1276, 11.0),
    City("Paris", "FR", 48.8566, 2.3522, 12.0),
    City("Madrid", "ES", 40.4168, -3.7038, 15.0),
    City("Lisbon", "PT", 38.7223, -9.1393, 17.0),
    City("Rome", "IT", 41.9028, 12.4964, 15.5),
    City("Vienna", "AT", 48.2082, 16.3738, 10.5),
    City("Prague", "CZ", 50.0755, 14.4378, 9.0),
    City("Warsaw", "PL", 52.2297, 21.0122, 8.5),
    City("Stockholm", "SE", 59.3293, 18.0686, 7.0),
    City("Helsinki", "FI", 60.1699, 24.9384, 6.0),
    City("Oslo", "NO", 59.9139, 10.7522, 6.0),
    City("Dublin", "IE", 53.3498, -6.2603, 10.0),
    City("Amsterdam", "NL", 52.3676, 4.9041, 10.5),
    City("Athens", "GR", 37.9838, 23.7275, 18.5),
    City("Istanbul", "TR", 41.0082, 28.9784, 15.0),
    City("Cairo", "EG", 30.0444, 31.2357, 22.5),
    City("Lagos", "NG", 6.5244, 3.3792, 27.0),
    City("Nairobi", "KE", -1.2921, 36.8219, 18.0),
    City("Cape Town", "ZA", -33.9249, 18.4241, 17.0),
    City("Dubai", "AE", 25.2048, 55.2708, 28.0),
    City("Mumbai", "IN", 19.076, 72.8777, 27.5),
    City("Delhi", "IN", 28.7041, 77.1025, 25.0),
    City("Bangkok", "TH", 13.7563, 100.5018, 29.0),
    City("Singapore", "SG", 1.3521, 103.8198, 27.5),
    City("Jakarta", "ID", -6.2088, 106.8456, 27.5),
    City("Hong Kong", "HK", 22.3193, 114.1694, 23.5),
    City("Shanghai", "CN", 31.2304, 121.4737, 17.0),
    City("Seoul", "KR", 37.5665, 126.978, 12.5),
    City("Tokyo", "JP", 35.6762, 139.6503, 16.0),
    City("Sydney", "AU", -33.8688, 151.2093, 18.0),
    City("Auckland", "NZ", -36.8485, 174.7633, 15.5),
    City("Los Angeles", "US", 34.0522, -118.2437, 18.5),
    City("New York", "US", 40.7128, -74.006, 13.0),
    City("Chicago", "US", 41.8781, -87.6298, 10.0),
    City("Mexico City", "MX", 19.4326, -99.1332, 16.5),
    City("Lima", "PE", -12.0464, -77.0428, 19.5),
    City("Toronto", "CA", 43.6532, -79.3832, 9.0),
)
