// Flex Consumption plan and the relay's function app (Linux, Python 3.11). Deployment package,
// host storage, Key Vault and telemetry all use the user-assigned identity.
param planName string
param name string
param location string
@description('Tags of every resource; only the site adds azd-service-name (azd wants exactly one resource with it).')
param tags object

@description('The azd service deployed to the site (azure.yaml).')
param serviceName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param appInsightsName string
param keyVaultUri string
param deliveryQueueName string

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@minValue(1)
@maxValue(1000)
@description('Concurrent HTTP requests per instance before scale-out; see main.bicep for how the value was chosen.')
param httpPerInstanceConcurrency int

@minValue(0)
@description('Instances of the HTTP function group kept warm (billed while idle). 0: scale to zero.')
param alwaysReadyInstances int

@description('Spread instances over availability zones; the platform then keeps at least two always-ready instances per scaling group (the HTTP functions, and each other function).')
param zoneRedundant bool

@allowed([
  'off'
  'monitor'
  'enforce'
])
param appCheckMode string

param appCheckProjectNumber string

param appCheckAppIds string

@minValue(0)
param deviceRatePerMinute int

@minValue(1)
param deviceRateBurst int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: Zone redundancy keeps at least two always-ready instances per scaling group (HTTP, and each other function) billed around the clock and is not in every Flex region; opt in with zoneRedundant=true
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_78: Flex Consumption sites reject siteConfig.ftpsState; FTP and SCM basic-auth publishing are turned off below instead
  //checkov:skip=CKV_AZURE_222: Public by design: the callers are mobile apps on the internet; every event route needs a function key
  //checkov:skip=CKV_AZURE_17: Mobile clients authenticate with a function key; client certificates would have to be provisioned to every device
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales on demand and to zero; warm instances are opt-in with alwaysReadyInstances
  //checkov:skip=CKV_AZURE_213: Flex Consumption does not support the platform health check; /api/health is there for external probes
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      // Every name below is read by the relay (shared/settings.py) or by the Functions platform;
      // tests/infra_rules.py fails on any other. Nothing here is a secret. Flex Consumption refuses
      // FUNCTIONS_WORKER_RUNTIME ("... for Flex Consumption sites is invalid"; functionAppConfig.runtime
      // replaces it) and has deprecated FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE (the
      // deployment container replaces it), WEBSITE_CONTENT* and the other plans' scale settings.
      // This list replaces the app's settings on every provision: a setting added in the portal
      // lasts until the next `azd provision` / `azd up`.
      appSettings: [
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          // The host keeps its diagnostic events in table storage.
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: storage.properties.primaryEndpoints.table
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: 'KEY_VAULT_URL'
          value: keyVaultUri
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'DELIVERY_FALLBACK'
          value: 'queue'
        }
        {
          name: 'DELIVERY_QUEUE_NAME'
          value: deliveryQueueName
        }
        {
          name: 'APP_CHECK_MODE'
          value: appCheckMode
        }
        {
          name: 'APP_CHECK_PROJECT_NUMBER'
          value: appCheckProjectNumber
        }
        {
          name: 'APP_CHECK_APP_IDS'
          value: appCheckAppIds
        }
        {
          name: 'DEVICE_RATE_PER_MINUTE'
          value: string(deviceRatePerMinute)
        }
        {
          name: 'DEVICE_RATE_BURST'
          value: string(deviceRateBurst)
        }
        {
          // Raise to INFO or DEBUG in the portal while investigating: the next provision sets it back.
          name: 'AZURE_SDK_LOG_LEVEL'
          value: 'WARNING'
        }
      ]
      // No ftpsState, use32BitWorkerProcess, netFrameworkVersion, linuxFxVersion,
      // functionAppScaleLimit or functionsRuntimeScaleMonitoringEnabled: Flex Consumption refuses them.
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        alwaysReady: (alwaysReadyInstances > 0) ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ] : []
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Deployments (azd, OneDeploy) authenticate with Entra tokens; no FTP or SCM basic-auth publishing.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
