// Relay infrastructure for azd: one resource group holding a Flex Consumption function app that
// reaches storage, Key Vault and Application Insights with a user-assigned managed identity only
// (no keys, no connection strings with secrets, no shared-key storage access).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the resource token and the azd-env-name tag.')
param environmentName string

// The regions that offer Flex Consumption: the one list of them in this project (azd offers only
// these when it asks for a region). Compare with `az functionapp list-flexconsumption-locations
// --query "[].name" -o tsv` and add a region here when Flex Consumption reaches it.
@minLength(1)
@description('Region for every resource; only regions that offer Flex Consumption are allowed.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'japanwest'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@secure()
@minLength(1)
@description('CIJ organization ID (a GUID). Stored only as the Key Vault secret cij-org-id.')
param cijOrgId string

@secure()
@minLength(1)
@description('CIJ public endpoint, e.g. https://public-eur.mkt.dynamics.com. Stored only as the Key Vault secret cij-public-endpoint.')
param cijPublicEndpoint string

@minValue(40)
@maxValue(1000)
@description('Upper bound of instances the relay scales out to; also the cost ceiling under a traffic spike.')
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
@description('Memory per instance in MB; CPU and network bandwidth are allocated in proportion.')
param instanceMemoryMB int = 2048

// perInstanceConcurrency: Python's default is 1, which would start one instance per in-flight
// request. The relay is async and I/O-bound: a single event is one outbound HTTPS call to CIJ on a
// pooled aiohttp session of UPSTREAM_MAX_CONNECTIONS=100 connections per instance. Flex Consumption
// scales the HTTP functions together (the "http" group) and each other trigger on instances of its
// own: the queue-triggered redeliver function never shares an instance, nor its pool, with HTTP
// requests. 64 in-flight single-event requests hold at most 64 connections and leave 36 for batch
// requests, which fan out up to BATCH_CONCURRENCY=10 calls each, so an instance asks for help before
// its pool makes callers wait for a connection; a burst of batches may queue briefly on the pool,
// inside FORWARD_TIMEOUT_SECONDS. Lower the value if CIJ throttles, raise it together with the pool.
@minValue(1)
@maxValue(1000)
@description('HTTP requests one instance serves at once before Flex Consumption adds an instance. Sized to the relay\'s pool of UPSTREAM_MAX_CONNECTIONS=100 outbound connections to CIJ per instance, which on HTTP instances serves HTTP requests only (queue redeliveries scale on instances of their own).')
param httpPerInstanceConcurrency int = 64

@minValue(0)
@maxValue(20)
@description('Instances of the HTTP functions kept warm, billed while idle. 0 (default): scale to zero and accept a cold start after idle periods.')
param alwaysReadyInstances int = 0

@description('Spread instances over availability zones (not offered in every Flex region). The platform then keeps at least two always-ready instances for each scaling group, whatever alwaysReadyInstances says: the HTTP functions form one group and every other function (the redeliver queue trigger, the queue-depth timer) is a group of its own, so at least six instances billed around the clock.')
param zoneRedundant bool = false

@description('Object ID of the person or pipeline that deploys (azd sets AZURE_PRINCIPAL_ID). Granted Key Vault Secrets Officer on the vault so it can rotate the CIJ secrets. Empty: no grant.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Kind of principal principalId names.')
param principalType string = 'User'

// A storage queue name is 3-63 lower-case letters, digits and single hyphens, starting and ending
// with a letter or digit. The Functions host moves messages that keep failing to <name>-poison,
// which must be a valid name too: hence at most 56 characters here. The length is checked before
// anything is deployed; a name with other characters is refused by the storage service when it
// creates the queue, before the function app exists (the app depends on the queue).
@minLength(3)
@maxLength(56)
@description('Name of the storage queue holding events that await redelivery (DELIVERY_QUEUE_NAME): 3-56 lower-case letters, digits and single hyphens, starting and ending with a letter or digit, so that <name>-poison is a valid queue name too.')
param deliveryQueueName string = 'pending-events'

@allowed([
  'off'
  'monitor'
  'enforce'
])
@description('Firebase App Check (APP_CHECK_MODE): off, monitor (verify and log, accept anyway) or enforce (401 without a valid X-Firebase-AppCheck token). monitor and enforce need appCheckProjectNumber. azd: AZURE_APP_CHECK_MODE.')
param appCheckMode string = 'off'

@description('Firebase project number the App Check tokens must be issued for (APP_CHECK_PROJECT_NUMBER, digits only). azd: AZURE_APP_CHECK_PROJECT_NUMBER.')
param appCheckProjectNumber string = ''

@description('Comma-separated Firebase app IDs allowed to send events (APP_CHECK_APP_IDS); empty: any app of the project. azd: AZURE_APP_CHECK_APP_IDS.')
param appCheckAppIds string = ''

@minValue(0)
@maxValue(1000000)
@description('Events per minute one device token may send, per instance (DEVICE_RATE_PER_MINUTE); 0 turns the limit off.')
param deviceRatePerMinute int = 60

@minValue(1)
@maxValue(1000000)
@description('Events one device may send at once before deviceRatePerMinute applies (DEVICE_RATE_BURST).')
param deviceRateBurst int = 120

@description('E-mail address the relay\'s alerts go to (poison queue not empty, backlog growing, events unavailable, CIJ refusing the target, Key Vault reads failing). Empty: no action group; the alerts show in the portal only. azd: AZURE_ALERT_EMAIL.')
param alertEmail string = ''

@minValue(1)
@maxValue(100)
@description('Alert when more than this percentage of the events answered in 15 minutes were unavailable (a 5xx to the app or a failed redelivery).')
param unavailableAlertPercent int = 5

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var serviceName = 'relay'
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${serviceName}-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    location: location
    tags: tags
    alertEmail: alertEmail
    unavailableSharePercent: unavailableAlertPercent
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${serviceName}'
    queueName: deliveryQueueName
    identityPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    cijOrgId: cijOrgId
    cijPublicEndpoint: cijPublicEndpoint
    identityPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

module functionApp 'modules/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    planName: 'plan-${resourceToken}'
    name: 'func-${serviceName}-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultUri: keyVault.outputs.uri
    deliveryQueueName: storage.outputs.queueName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    alwaysReadyInstances: alwaysReadyInstances
    zoneRedundant: zoneRedundant
    appCheckMode: appCheckMode
    appCheckProjectNumber: appCheckProjectNumber
    appCheckAppIds: appCheckAppIds
    deviceRatePerMinute: deviceRatePerMinute
    deviceRateBurst: deviceRateBurst
  }
}

// azd writes these into .azure/<env>/.env; none of them is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output RESOURCE_GROUP string = rg.name
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_RELAY_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.uri
output SERVICE_RELAY_ENDPOINT_URL string = functionApp.outputs.uri
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output DELIVERY_POISON_QUEUE_NAME string = '${storage.outputs.queueName}-poison'
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_MANAGED_IDENTITY_NAME string = identity.outputs.name
// Read by the predeploy hook (scripts/wait_for_roles.py) to find the identity's role assignments.
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
